/**
 * `quick-tunnel tunnel queue NAME [--enable | --disable] [--purge [--failed]] [--json]`:
 * store-and-forward of a named tunnel. Without flags, lists what the relay keeps for it
 * (waiting and failed requests); `--enable` / `--disable` turn it on or off (kept in
 * the reservation on the relay); `--purge` clears it (`--failed`: only failed items).
 */
import { ConfigError } from '../../shared/errors.js';
import { relayApi, type QueueView } from '../tunnel/api.js';
import { loadCredential } from '../tunnel/credentials.js';
import { ago, relayFor, stdio, type Output, type RelayFlags } from './tunnel.js';

export interface TunnelQueueOptions extends RelayFlags {
  name: string;
  enable: boolean;
  disable: boolean;
  purge: boolean;
  failed: boolean;
  json: boolean;
}

export async function runTunnelQueue(
  opts: TunnelQueueOptions,
  io: Output = stdio,
): Promise<number> {
  if (opts.enable && opts.disable) {
    throw new ConfigError('--enable and --disable contradict each other: give one of them');
  }
  if (opts.failed && !opts.purge) {
    throw new ConfigError('--failed goes with --purge (it clears only the failed requests)');
  }
  const { settings, relay, api } = await relayFor(opts, io);
  const { data } = await loadCredential(settings.configDir, relay, opts.name);
  const name = data.name;
  const say = (line: string): void => (opts.json ? io.err(line) : io.out(line));
  if (opts.enable || opts.disable) {
    const status = await relayApi.setQueue(api, name, data.credential, opts.enable);
    say(
      status.queue
        ? `Queue ON for '${name}': while it is offline, the relay keeps POST/PUT/PATCH/DELETE requests and delivers them when it is back.`
        : `Queue OFF for '${name}': offline requests get 503 again (anything already kept is still delivered; --purge clears it).`,
    );
  }
  if (opts.purge) {
    const which = opts.failed ? 'failed' : 'all';
    const { purged } = await relayApi.purgeQueue(api, name, data.credential, which);
    say(
      `Purged ${purged} ${which === 'failed' ? 'failed ' : ''}request(s) from the queue of '${name}'.`,
    );
  }
  const view = await relayApi.queue(api, name, data.credential);
  if (opts.json) {
    io.out(JSON.stringify(view));
    return 0;
  }
  if (opts.purge || opts.enable || opts.disable) {
    io.out(summary(view));
    return 0;
  }
  printQueue(view, io);
  return 0;
}

function summary(v: QueueView): string {
  return `'${v.name}': queue ${v.enabled ? 'on' : 'off'}, ${v.connected ? 'connected' : 'offline'}, ${v.waiting} waiting, ${v.failed} failed`;
}

function printQueue(v: QueueView, io: Output): void {
  io.out(summary(v));
  io.out(
    `  limits: bodies up to ${v.limits.maxBodyBytes} bytes, ${v.limits.maxItems} requests, delivered within ${Math.round(v.limits.maxAgeSeconds / 3600)} h`,
  );
  if (v.items.length === 0) {
    if (!v.enabled) io.out(`Turn it on with: quick-tunnel tunnel queue ${v.name} --enable`);
    return;
  }
  const now = Date.now();
  const table = [
    ['#', 'STATE', 'METHOD', 'PATH', 'BYTES', 'QUEUED', 'ATTEMPTS', 'DELIVERY ID', 'NOTE'],
    ...v.items.map((i) => [
      String(i.seq),
      i.state,
      i.method,
      i.path.length > 40 ? `${i.path.slice(0, 39)}…` : i.path,
      String(i.bodyBytes),
      ago(now, Date.parse(i.queuedAt)),
      String(i.attempts),
      i.deliveryId,
      i.failed !== undefined ? `${i.failed.reason}: ${i.failed.message}` : (i.lastError ?? ''),
    ]),
  ];
  const widths = table[0]!.map((_, c) => Math.max(...table.map((row) => row[c]!.length)));
  for (const row of table) {
    io.out(
      row
        .map((cell, c) => cell.padEnd(widths[c]!))
        .join('  ')
        .trimEnd(),
    );
  }
  if (v.failed > 0)
    io.out(`Clear failed requests with: quick-tunnel tunnel queue ${v.name} --purge --failed`);
}
