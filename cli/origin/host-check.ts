/**
 * Spots a dev server that refused the public Host header (Vite's "Blocked request",
 * webpack-dev-server's "Invalid Host header") from the first bytes of a response body,
 * and words the one-time hint that says how to allow the tunnel's host.
 */

/** How many first response body bytes are inspected. */
const SNIFF_BYTES = 64;
const NO_BYTES = Buffer.alloc(0);

export type DevServer = 'vite' | 'webpack';

/** Watches one response body; `push(undefined)` at its end. */
export class HostCheckSniffer {
  private seen: Buffer | undefined;

  /** A decided verdict for the body so far: a refusing server, 'none', or undefined (undecided). */
  push(chunk: Buffer | undefined): DevServer | 'none' | undefined {
    if (chunk !== undefined) {
      const part = chunk.subarray(0, SNIFF_BYTES);
      this.seen = this.seen === undefined ? chunk : Buffer.concat([this.seen, part]);
    }
    const verdict = hostRejection(this.seen ?? NO_BYTES, chunk === undefined);
    if (verdict === 'undecided') return undefined;
    this.seen = undefined;
    return verdict;
  }
}

/** The hint for a refusal of `hostname` by the dev server at `label`. */
export function hostRejectedHint(server: DevServer, label: string, hostname: string): string {
  // The tunnel's hostname changes every run: allow the whole relay domain (a leading
  // dot matches every subdomain in both Vite and webpack), or rewrite Host.
  const wildcard = `.${hostname.split('.').slice(1).join('.')}`;
  return server === 'vite'
    ? `the dev server at ${label} (Vite) refused the public host name ${hostname} ` +
        `("Blocked request. This host is not allowed"). Fix: allow every tunnel host in ` +
        `vite.config.js: server: { allowedHosts: ['${wildcard}'] } (the name changes every ` +
        `run), or run quick-tunnel with --host-header rewrite`
    : `the dev server at ${label} (webpack-dev-server) refused the public host ` +
        `name ${hostname} ("Invalid Host header"). Fix: allow every tunnel host in ` +
        `webpack.config.js: devServer: { allowedHosts: ['${wildcard}'] } (the name changes ` +
        `every run), or run quick-tunnel with --host-header rewrite`;
}

const HOST_REJECTIONS = [
  { server: 'vite', text: 'Blocked request. This host' },
  { server: 'webpack', text: 'Invalid Host header' },
] as const;

/**
 * Whether a response body starts like a dev server's refusal of a foreign Host, from its
 * first bytes (`final`: the body ended there). Most bodies are told apart by their first
 * non-blank byte, without decoding any text.
 */
function hostRejection(body: Buffer, final: boolean): 'vite' | 'webpack' | 'none' | 'undecided' {
  let start = 0;
  while (start < body.length && start < SNIFF_BYTES && isBlank(body[start]!)) start++;
  if (start === body.length) return final || start >= SNIFF_BYTES ? 'none' : 'undecided';
  const first = body[start]!;
  if (first !== 0x42 /* B */ && first !== 0x49 /* I */) return 'none';
  const text = body.toString('latin1', start, start + SNIFF_BYTES);
  for (const { server, text: refusal } of HOST_REJECTIONS) {
    if (text.startsWith(refusal)) return server;
    if (refusal.startsWith(text) && !final) return 'undecided';
  }
  return 'none';
}

function isBlank(byte: number): boolean {
  return byte === 0x20 || byte === 0x09 || byte === 0x0a || byte === 0x0d;
}

/** `abc.example.com:8080` → `abc.example.com`; `[::1]:3000` → `::1`. */
export function hostnameOf(host: string): string {
  if (host.startsWith('[')) {
    const end = host.indexOf(']');
    return end < 0 ? host.slice(1) : host.slice(1, end);
  }
  const i = host.lastIndexOf(':');
  return i < 0 ? host : host.slice(0, i);
}
