/**
 * Path routes: a tunnel sends a request whose path matches a route to that route's
 * origin instead of its own (`/api` → localhost:8080 while the rest goes to the
 * frontend on :3000, so the browser sees one origin and needs no CORS).
 *
 * Matching is a prefix match on whole path segments: `/api` matches `/api`, `/api/`,
 * `/api/users` and `/api?x=1`, never `/apix`. Routes are tried in the order they are
 * listed and the first match wins; no match goes to the tunnel's own target. The path
 * is compared as the visitor sent it (no percent-decoding, no dot-segment removal) and
 * forwarded unchanged. WebSocket upgrades are routed the same way.
 */
import { isRequestHead } from '../../shared/protocol/tunnel.js';
import type { MuxStream } from '../../shared/mux/stream.js';
import type { OriginProxy } from './proxy.js';

/** A route prefix in canonical form: starts with `/`, no trailing `/` (except `/` itself). */
export function normalizeRoutePath(path: string): string {
  const trimmed = path.replace(/\/+$/, '');
  return trimmed === '' ? '/' : trimmed;
}

/** True if `prefix` (normalized) matches the request target's path on segment boundaries. */
export function routeMatches(prefix: string, target: string): boolean {
  if (prefix === '/') return true;
  if (!target.startsWith(prefix)) return false;
  const next = target.charCodeAt(prefix.length);
  // End of target, `/`, `?` or `#`.
  return Number.isNaN(next) || next === 0x2f || next === 0x3f || next === 0x23;
}

export interface OriginRoute {
  /** Normalized prefix (see normalizeRoutePath). */
  readonly path: string;
  readonly proxy: OriginProxy;
}

/** Sends each stream to the proxy of the first matching route, else to `fallback`. */
export class OriginRouter {
  constructor(
    readonly fallback: OriginProxy,
    readonly routes: readonly OriginRoute[] = [],
  ) {}

  /** The proxy that serves a request target (path and query). */
  proxyFor(target: string): OriginProxy {
    for (const route of this.routes) if (routeMatches(route.path, target)) return route.proxy;
    return this.fallback;
  }

  handle(stream: MuxStream): void {
    if (this.routes.length === 0) return this.fallback.handle(stream);
    const head = stream.meta;
    // A bad head is the fallback's to refuse.
    const proxy = isRequestHead(head) ? this.proxyFor(head.url) : this.fallback;
    proxy.handle(stream);
  }

  /** Every proxy, the fallback first. */
  get proxies(): OriginProxy[] {
    return [this.fallback, ...this.routes.map((r) => r.proxy)];
  }

  close(): void {
    for (const proxy of this.proxies) proxy.close();
  }
}
