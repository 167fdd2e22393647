/**
 * `quick-tunnel tunnel create|run|list|delete`: named tunnels. The relay keeps the
 * reservation (name, id, credential hash); this machine keeps the credential in
 * `<config dir>/tunnels/<relay host>/<name>.json` (mode 0600).
 *
 * `tunnel list` shows the tunnels whose credentials are stored here for the current
 * relay, each with the relay's live status (connected, replicas, last seen): the
 * credential is what makes a tunnel "yours", so a credential file copied to another
 * machine shows up there too.
 */
import { plainRelayWarning } from '../tunnel/client.js';
import { ConfigError } from '../../shared/errors.js';
import {
  readEnvironment,
  relayProxy,
  resolveRelaySettings,
  type RelaySettings,
} from '../config.js';
import { RelayApiError, relayApi, type RelayApiOptions, type TunnelStatus } from '../tunnel/api.js';
import {
  credentialDir,
  credentialPath,
  listCredentials,
  loadCredential,
  normalizeTunnelName,
  readCredential,
  removeCredential,
  saveCredential,
} from '../tunnel/credentials.js';
import { explainRelayError } from '../tunnel/explain.js';
import { relayCa } from '../tunnel/pin.js';
import { proxyAgentFor } from '../tunnel/proxy.js';
import { runExpose, type ExposeOptions } from './expose.js';

export interface RelayFlags {
  relay: string | undefined;
  token: string | undefined;
  ca: string | undefined;
  caFingerprint?: string | undefined;
  relayInsecure: boolean;
}

export interface Output {
  out: (line: string) => void;
  err: (line: string) => void;
}

export const stdio: Output = {
  out: (line) => void process.stdout.write(`${line}\n`),
  err: (line) => void process.stderr.write(`${line}\n`),
};

/** The relay a tunnel command talks to, and how (CA, proxy). */
export async function relayFor(
  flags: RelayFlags,
  io: Output,
): Promise<{ settings: RelaySettings; relay: URL; api: RelayApiOptions }> {
  const env = readEnvironment();
  const settings = resolveRelaySettings(flags, env);
  const relay = requireRelay(settings);
  const proxy = relayProxy(relay);
  const api: RelayApiOptions = { relay };
  const plain = plainRelayWarning(relay);
  if (plain !== undefined) io.err(plain);
  if (flags.relayInsecure) {
    api.insecure = true;
    io.err("warning: --relay-insecure: the relay's certificate is NOT verified");
  } else {
    api.ca = await relayCa(settings, relay, proxy).catch((err: unknown) => {
      throw explainRelayError(err, settings);
    });
  }
  if (proxy !== undefined) api.agent = await proxyAgentFor(proxy, relay);
  return { settings, relay, api };
}

function requireRelay(settings: RelaySettings): URL {
  if (settings.relay === undefined) {
    throw new ConfigError(
      'named tunnels live on a relay: pass --relay URL, or save one with `quick-tunnel login --relay URL [--token TOKEN]`',
    );
  }
  return settings.relay;
}

export interface TunnelCreateOptions extends RelayFlags {
  name: string;
  url: string | undefined;
  json: boolean;
  /** Store-and-forward: the relay keeps requests while the tunnel is offline. */
  queue?: boolean;
}

export async function runTunnelCreate(
  opts: TunnelCreateOptions,
  io: Output = stdio,
): Promise<number> {
  const { settings, relay, api } = await relayFor(opts, io);
  const name = normalizeTunnelName(opts.name);
  // An impossible name gets the relay's exact reason below; only check for a local
  // file when the name can be a file name.
  let file: string | undefined;
  try {
    file = credentialPath(settings.configDir, relay, name);
  } catch {
    file = undefined;
  }
  if (file !== undefined && (await readCredential(file)) !== undefined) {
    throw new ConfigError(
      `you already have tunnel '${name}' on ${relay.host} (credential: ${file}): run it with ` +
        `\`quick-tunnel tunnel run ${name} --url PORT\`, or delete it first with \`quick-tunnel tunnel delete ${name}\``,
    );
  }
  const created = await relayApi
    .create(api, opts.name, settings.token, opts.queue === true)
    .catch((err: unknown) => {
      throw explainRelayError(err, settings);
    });
  file = credentialPath(settings.configDir, relay, created.name);
  await saveCredential(file, {
    relay: relay.href.replace(/\/$/, ''),
    id: created.id,
    name: created.name,
    hostname: created.hostname,
    createdAt: created.createdAt,
    credential: created.credential,
    ...(opts.url !== undefined ? { target: opts.url } : {}),
  });
  const url = created.urls[0] ?? `https://${created.hostname}`;
  if (opts.json) {
    // The credential stays in the file: output is for scripts and logs.
    io.out(
      JSON.stringify({
        event: 'created',
        id: created.id,
        name: created.name,
        hostname: created.hostname,
        urls: created.urls,
        createdAt: created.createdAt,
        queue: created.queue === true,
        credentialFile: file,
      }),
    );
    return 0;
  }
  io.out(`Created tunnel '${created.name}' (id ${created.id})`);
  io.out(`  URL:        ${url}`);
  io.out(`  credential: ${file}`);
  io.out(
    `              (mode 0600: anyone with this file can serve ${created.hostname}; copy it to run replicas elsewhere)`,
  );
  if (opts.queue === true) {
    io.out(
      `  queue:      on (while offline, the relay keeps POST/PUT/PATCH/DELETE requests; see \`quick-tunnel tunnel queue ${created.name}\`)`,
    );
  }
  io.out(`Run it with: quick-tunnel tunnel run ${created.name} --url ${opts.url ?? 'PORT'}`);
  return 0;
}

export interface TunnelRunOptions extends Omit<ExposeOptions, 'target' | 'name'> {
  name: string;
  url: string | undefined;
}

/** `tunnel run NAME [--url TARGET]`: --url is remembered in the credential file. */
export async function runTunnelRun(opts: TunnelRunOptions): Promise<number> {
  const settings = resolveRelaySettings(opts, readEnvironment());
  const relay = requireRelay(settings);
  const { file, data } = await loadCredential(settings.configDir, relay, opts.name);
  const target = opts.url ?? data.target;
  if (target === undefined) {
    throw new ConfigError(
      `which local app should tunnel '${data.name}' expose? Pass --url TARGET (PORT, HOST:PORT or http(s)://HOST:PORT); it is remembered for the next run`,
    );
  }
  if (opts.url !== undefined && opts.url !== data.target) {
    await saveCredential(file, { ...data, target: opts.url });
  }
  const { url: _url, ...rest } = opts;
  return runExpose({ ...rest, relay: relay.href, target, name: data.name });
}

export interface TunnelListOptions extends RelayFlags {
  json: boolean;
}

type ListState = 'connected' | 'offline' | 'deleted' | 'credential-refused';

interface ListRow {
  name: string;
  id: string;
  hostname: string;
  url: string | undefined;
  state: ListState;
  connected: boolean;
  replicas: number;
  /** Store-and-forward on (`tunnel queue NAME`); undefined when the relay did not say. */
  queue: boolean | undefined;
  connections: number;
  createdAt: string;
  lastSeenAt: string | null;
  credentialFile: string;
}

export async function runTunnelList(opts: TunnelListOptions, io: Output = stdio): Promise<number> {
  const { settings, relay, api } = await relayFor(opts, io);
  const creds = await listCredentials(settings.configDir, relay);
  const rows = await Promise.all(
    creds.map(async ({ file, data }): Promise<ListRow> => {
      const row: ListRow = {
        name: data.name,
        id: data.id,
        hostname: data.hostname,
        url: undefined,
        state: 'offline',
        connected: false,
        replicas: 0,
        queue: undefined,
        connections: 0,
        createdAt: data.createdAt,
        lastSeenAt: null,
        credentialFile: file,
      };
      let status: TunnelStatus;
      try {
        status = await relayApi.status(api, data.name, data.credential);
      } catch (err) {
        if (err instanceof RelayApiError && err.status === 404) return { ...row, state: 'deleted' };
        if (err instanceof RelayApiError && err.status === 401) {
          return { ...row, state: 'credential-refused' };
        }
        throw err;
      }
      return {
        ...row,
        id: status.id,
        hostname: status.hostname,
        url: status.urls[0],
        state: status.connected ? 'connected' : 'offline',
        connected: status.connected,
        replicas: status.replicas,
        queue: typeof status.queue === 'boolean' ? status.queue : undefined,
        connections: status.connections,
        createdAt: status.createdAt,
        lastSeenAt: status.lastSeenAt,
      };
    }),
  );
  if (opts.json) {
    io.out(JSON.stringify({ relay: relay.href.replace(/\/$/, ''), tunnels: rows }));
    return 0;
  }
  if (rows.length === 0) {
    io.out(
      `No named tunnels for ${relay.host} on this machine (credentials live in ${credentialDir(settings.configDir, relay)}).`,
    );
    io.out('Create one with: quick-tunnel tunnel create NAME');
    return 0;
  }
  const now = Date.now();
  const table = [
    ['NAME', 'URL', 'STATUS', 'REPLICAS', 'CONNECTIONS', 'QUEUE', 'CREATED', 'LAST SEEN'],
    ...rows.map((r) => [
      r.name,
      r.url ?? r.hostname,
      r.state,
      String(r.replicas),
      String(r.connections),
      r.queue === undefined ? '-' : r.queue ? 'on' : 'off',
      r.createdAt.slice(0, 10),
      r.connected ? 'now' : r.lastSeenAt === null ? 'never' : ago(now, Date.parse(r.lastSeenAt)),
    ]),
  ];
  const widths = table[0]!.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
  for (const row of table) {
    io.out(
      row
        .map((cell, i) => cell.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    );
  }
  for (const r of rows) {
    if (r.state === 'deleted') {
      io.err(
        `note: '${r.name}' no longer exists on the relay; remove its credential with \`quick-tunnel tunnel delete ${r.name}\``,
      );
    } else if (r.state === 'credential-refused') {
      io.err(
        `note: the relay refuses the credential of '${r.name}' (${r.credentialFile}): the name now belongs to someone else`,
      );
    }
  }
  return 0;
}

/** "5s ago", "3m ago", "2h ago", "4d ago". */
export function ago(now: number, then: number): string {
  const s = Math.max(0, Math.round((now - then) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86_400)}d ago`;
}

export interface TunnelDeleteOptions extends RelayFlags {
  name: string;
  force: boolean;
}

export async function runTunnelDelete(
  opts: TunnelDeleteOptions,
  io: Output = stdio,
): Promise<number> {
  const { settings, relay, api } = await relayFor(opts, io);
  const { file, data } = await loadCredential(settings.configDir, relay, opts.name);
  try {
    const deleted = await relayApi.delete(api, data.name, data.credential, opts.force);
    await removeCredential(file);
    io.out(
      `Deleted tunnel '${data.name}' (id ${deleted.id}): ${data.hostname} is free again.` +
        (deleted.connectionsClosed > 0
          ? ` Disconnected ${deleted.connectionsClosed} connection(s).`
          : ''),
    );
    io.out(`Removed ${file}`);
    return 0;
  } catch (err) {
    if (err instanceof RelayApiError && err.status === 404) {
      await removeCredential(file);
      io.out(
        `Tunnel '${data.name}' was already gone from ${relay.host}; removed the local credential ${file}`,
      );
      return 0;
    }
    if (err instanceof RelayApiError && err.apiCode === 'QT_ERR_TUNNEL_CONNECTED') {
      throw new ConfigError(
        `${err.message} (\`quick-tunnel tunnel delete ${data.name} --force\` disconnects it)`,
        { cause: err },
      );
    }
    throw err;
  }
}
