/**
 * Host routing: one parsed value decides where a request goes, and every later check
 * (access control, logs) reads the same value.
 */

export type Route =
  | { kind: 'apex' }
  | { kind: 'tunnel'; label: string; hostname: string }
  | { kind: 'unknown'; host: string };

/**
 * Normalises a Host header: strips the port, lowercases, drops one trailing dot.
 * Returns undefined for a missing or malformed value.
 */
export function normalizeHost(raw: string | undefined): string | undefined {
  if (raw === undefined) return undefined;
  let host = raw.trim().toLowerCase();
  if (host === '') return undefined;
  if (host.startsWith('[')) {
    const end = host.indexOf(']');
    if (end === -1) return undefined;
    const rest = host.slice(end + 1);
    if (rest !== '' && !/^:\d{1,5}$/.test(rest)) return undefined;
    return host.slice(0, end + 1);
  }
  const colon = host.indexOf(':');
  if (colon !== -1) {
    if (!/^\d{1,5}$/.test(host.slice(colon + 1))) return undefined;
    host = host.slice(0, colon);
  }
  if (host.endsWith('.')) host = host.slice(0, -1);
  if (!/^[a-z0-9.-]+$/.test(host)) return undefined;
  return host;
}

/** Routes a normalised host against the relay's domain. */
export function routeHost(host: string | undefined, domain: string): Route {
  if (host === undefined) return { kind: 'unknown', host: '' };
  if (host === domain) return { kind: 'apex' };
  // An IP literal names the relay machine itself (health checks, direct probes),
  // never a tunnel.
  if (isIpLiteral(host)) return { kind: 'apex' };
  const suffix = `.${domain}`;
  if (host.endsWith(suffix)) {
    const label = host.slice(0, -suffix.length);
    if (label !== '' && !label.includes('.')) return { kind: 'tunnel', label, hostname: host };
  }
  return { kind: 'unknown', host };
}

/** True for a normalised host that is an IP address (`127.0.0.1`, `[::1]`). */
export function isIpLiteral(host: string): boolean {
  return host.startsWith('[') || /^\d{1,3}(\.\d{1,3}){3}$/.test(host);
}

/**
 * The embedded relay's direct address: a Host that is an IP literal
 * (`127.0.0.1:PORT`, the LAN address with `--lan`) goes to the relay's one tunnel, for
 * clients that cannot resolve `*.localhost` (Node's fetch, Python, wget). With no tunnel,
 * or several, it stays the relay's own host.
 */
export function soleTunnelRoute(
  host: string | undefined,
  route: Route,
  domain: string,
  tunnels: { size: number; tunnels(): IterableIterator<{ label: string }> },
): Route {
  if (route.kind !== 'apex' || host === undefined || !isIpLiteral(host) || tunnels.size !== 1) {
    return route;
  }
  const only = tunnels.tunnels().next().value;
  if (only === undefined) return route;
  return { kind: 'tunnel', label: only.label, hostname: `${only.label}.${domain}` };
}
