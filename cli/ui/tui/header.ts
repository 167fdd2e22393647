/**
 * The header: tunnel status (in colour), public URL(s) and local target, relay with its
 * round-trip time, tunnel kind, uptime and connections, then totals like ngrok's
 * (requests total and open, rates over 1 and 5 minutes, p50/p90) and the latest notice.
 */
import type { TuiStore } from './store.js';
import { formatDuration, formatRate, formatUptime, printable } from './format.js';
import { compose, type Color, type Paint, type Seg } from './paint.js';

const LABEL_WIDTH = 13;

const label = (text: string): Seg => ({ text: text.padEnd(LABEL_WIDTH), bold: true });

/** The status words and their colour, with the countdown while reconnecting. */
export function statusText(store: TuiStore): { text: string; color: Color } {
  const t = store.tunnel;
  switch (store.status()) {
    case 'connecting': {
      const attempt = t.connectAttempt > 1 ? ` (attempt ${t.connectAttempt})` : '';
      return {
        text: `◌ connecting to ${printable(t.relay ?? 'the relay')}…${attempt}`,
        color: 'yellow',
      };
    }
    case 'online':
      return { text: '● online', color: 'green' };
    case 'reconnecting': {
      const r = t.reconnect;
      if (r === undefined) return { text: '↻ reconnecting…', color: 'yellow' };
      const left = Math.ceil((r.at - store.now()) / 1000);
      const when = left > 0 ? ` in ${left}s` : '…';
      return {
        text: `↻ reconnecting${when} (attempt ${r.attempt}): ${printable(r.error)}`,
        color: 'yellow',
      };
    }
    case 'closing':
      return { text: '◌ closing the tunnel…', color: 'yellow' };
    case 'offline':
      return { text: '○ offline', color: 'red' };
  }
}

/** One line: status, and uptime at the right (the only header line above the details). */
export function statusLine(store: TuiStore, width: number, paint: Paint): string {
  const { text, color } = statusText(store);
  const since = store.tunnel.onlineSince;
  const uptime =
    since !== undefined && !store.tunnel.closed && width >= 50
      ? ` uptime ${formatUptime(store.now() - since)}`
      : '';
  const left = compose(
    paint,
    [label('quick-tunnel'), { text, fg: color, bold: true }],
    width - uptime.length,
  );
  const leftLength = Math.min(width - uptime.length, LABEL_WIDTH + text.length);
  const gap = ' '.repeat(Math.max(0, width - uptime.length - leftLength));
  return `${left}${gap}${paint.seg({ text: uptime, dim: true })}`;
}

/** The full header, one string per line. */
export function headerLines(store: TuiStore, width: number, paint: Paint): string[] {
  const t = store.tunnel;
  const totals = store.totals();
  const rtt = store.rttMs();
  const target = t.target ?? '';
  const lines = [statusLine(store, width, paint)];
  const urls = t.urls.length > 0 ? t.urls.slice(0, 2) : [undefined];
  urls.forEach((url, i) => {
    lines.push(
      compose(
        paint,
        [
          label(i === 0 ? 'Forwarding' : ''),
          url === undefined
            ? { text: '(waiting for the relay)', dim: true }
            : { text: printable(url), fg: 'cyan' },
          target !== '' ? ` → ${printable(target)}` : '',
          i === 0 && t.local ? { text: ' (local only: this machine)', dim: true } : '',
          i === 1 && t.local ? { text: ' (any HTTP client on this machine)', dim: true } : '',
        ],
        width,
      ),
    );
  });
  if (t.lanUrl !== undefined) {
    lines.push(
      compose(
        paint,
        [
          label('LAN'),
          { text: printable(t.lanUrl), fg: 'cyan' },
          { text: ' (anyone on this network; o: QR code)', fg: 'yellow' },
        ],
        width,
      ),
    );
  }
  const relay = [
    printable(t.relay ?? ''),
    rtt !== undefined ? `rtt ${Math.round(rtt)} ms` : undefined,
    t.kind,
    t.url !== undefined
      ? `connections ${store.liveConnections()}/${t.connectionsWanted || 1}`
      : undefined,
  ].filter((p): p is string => p !== undefined && p !== '');
  if (t.inspectorUrl !== undefined) {
    lines.push(
      compose(paint, [label('Inspector'), { text: printable(t.inspectorUrl), fg: 'cyan' }], width),
    );
  }
  lines.push(compose(paint, [label('Relay'), relay.join(' · ')], width));
  const p = (ms: number | undefined): string => (ms === undefined ? '–' : formatDuration(ms));
  lines.push(
    compose(
      paint,
      [
        label('Requests'),
        `${totals.total} total · ${totals.open} open · 1m ${formatRate(totals.rate1m)} · ` +
          `5m ${formatRate(totals.rate5m)} · p50 ${p(totals.p50Ms)} · p90 ${p(totals.p90Ms)}`,
      ],
      width,
    ),
  );
  const notice = store.notices[store.notices.length - 1];
  if (notice !== undefined) {
    const prefix = notice.kind === 'warning' ? '! ' : notice.kind === 'hint' ? 'hint: ' : '';
    lines.push(
      compose(
        paint,
        [
          {
            text: `${prefix}${printable(notice.message)}`,
            fg: notice.kind === 'warning' ? 'yellow' : 'cyan',
          },
        ],
        width,
      ),
    );
  }
  return lines;
}

/** Lines the full header takes (the list gets the rest). */
export function headerHeight(store: TuiStore): number {
  const urls = Math.max(1, Math.min(2, store.tunnel.urls.length));
  const lan = store.tunnel.lanUrl !== undefined ? 1 : 0;
  const inspector = store.tunnel.inspectorUrl !== undefined ? 1 : 0;
  return 1 + urls + lan + inspector + 2 + (store.notices.length > 0 ? 1 : 0);
}
