/**
 * Visitor access control per tunnel, enforced at the relay before anything reaches
 * the tunnel's laptop: HTTP basic auth (`--basic-auth user:pass`) and an IP allowlist
 * (`--allow-ip CIDR`, IPv4 and IPv6). The CLI sends only a SHA-256 of `user:pass`, so
 * the relay never holds the password itself.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import net from 'node:net';
import { parseCidr } from '../../shared/access.js';

export { basicAuthDigest, parseCidr } from '../../shared/access.js';
import type { ErrorPage } from './pages.js';

export interface CompiledAccess {
  basicAuth: Buffer | undefined;
  allow: net.BlockList | undefined;
  /** The validated policy it was compiled from (kept so a queued tunnel can store it). */
  policy?: { basicAuthSha256?: string; allowIps?: string[] };
}

/** True when the policy asks for nothing. */
export function isOpenAccess(access: CompiledAccess): boolean {
  return access.basicAuth === undefined && access.allow === undefined;
}

/** Validates and compiles a policy from the wire; throws with a message on bad input. */
export function compileAccess(policy: unknown): CompiledAccess {
  const p = (typeof policy === 'object' && policy !== null ? policy : {}) as Record<
    string,
    unknown
  >;
  let basicAuth: Buffer | undefined;
  const digest = p['basicAuthSha256'];
  if (digest !== undefined) {
    if (typeof digest !== 'string' || !/^[0-9a-f]{64}$/.test(digest))
      throw new Error('invalid basic auth digest');
    basicAuth = Buffer.from(digest, 'hex');
  }
  let allow: net.BlockList | undefined;
  const ips = p['allowIps'];
  if (ips !== undefined) {
    if (!Array.isArray(ips) || ips.length > 256 || !ips.every((x) => typeof x === 'string')) {
      throw new Error('allowIps must be a list of at most 256 CIDRs');
    }
    if (ips.length > 0) {
      allow = new net.BlockList();
      for (const cidr of ips as string[]) {
        const { address, prefix, family } = parseCidr(cidr);
        allow.addSubnet(address, prefix, family);
      }
    }
  }
  const kept: { basicAuthSha256?: string; allowIps?: string[] } = {};
  if (basicAuth !== undefined) kept.basicAuthSha256 = digest as string;
  if (allow !== undefined) kept.allowIps = [...(ips as string[])];
  return { basicAuth, allow, policy: kept };
}

/** Normalises the socket's address (IPv4-mapped IPv6 → IPv4). */
export function visitorAddress(req: IncomingMessage): string {
  const a = req.socket.remoteAddress ?? '';
  return a.startsWith('::ffff:') && net.isIPv4(a.slice(7)) ? a.slice(7) : a;
}

/** The page to answer with when `req` may not visit, else undefined. */
export function checkAccess(
  req: IncomingMessage,
  access: CompiledAccess,
  hostname: string,
): ErrorPage | undefined {
  if (access.allow !== undefined) {
    const ip = visitorAddress(req);
    const family = net.isIPv4(ip) ? 'ipv4' : 'ipv6';
    if (ip === '' || !access.allow.check(ip, family)) {
      return {
        status: 403,
        title: 'Forbidden',
        detail: `Your address is not allowed to visit ${hostname}.`,
        hint: "If this is your tunnel: add the visitor's address with --allow-ip.",
      };
    }
  }
  if (access.basicAuth !== undefined) {
    const header = req.headers.authorization ?? '';
    const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
    const presented = m === null ? undefined : Buffer.from(m[1]!, 'base64').toString('utf8');
    const ok =
      presented !== undefined &&
      timingSafeEqual(createHash('sha256').update(presented, 'utf8').digest(), access.basicAuth);
    if (!ok) {
      return {
        status: 401,
        title: 'Authentication required',
        detail: `${hostname} is protected by a user name and password.`,
        hint: 'Ask the owner of this tunnel for the credentials.',
        headers: { 'www-authenticate': 'Basic realm="quick-tunnel", charset="UTF-8"' },
      };
    }
  }
  return undefined;
}
