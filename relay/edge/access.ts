/**
 * Visitor access control per tunnel, enforced at the relay before anything reaches
 * the tunnel's laptop: HTTP basic auth (`--basic-auth user:pass`) and an IP allowlist
 * (`--allow-ip CIDR`, IPv4 and IPv6). The CLI sends only a SHA-256 of `user:pass`, so
 * the relay never holds the password itself.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import net from 'node:net';
import type { ErrorPage } from './pages.js';

/** What a tunnel's HELLO may ask the relay to enforce. */
export interface AccessPolicy {
  /** hex SHA-256 of `user:password`. */
  basicAuthSha256?: string;
  /** CIDRs (or single addresses) allowed to visit; empty/absent = everyone. */
  allowIps?: string[];
}

export interface CompiledAccess {
  basicAuth: Buffer | undefined;
  allow: net.BlockList | undefined;
}

/** Hash the CLI sends for `--basic-auth user:pass`. */
export function basicAuthDigest(userPass: string): string {
  return createHash('sha256').update(userPass, 'utf8').digest('hex');
}

/** Parses `1.2.3.0/24`, `2001:db8::/32` or a bare address. Throws on bad input. */
export function parseCidr(text: string): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } {
  const [address = '', prefixText] = text.trim().split('/');
  const version = net.isIP(address);
  if (version === 0) throw new Error(`'${text}' is not an IP address or CIDR`);
  const max = version === 4 ? 32 : 128;
  const prefix = prefixText === undefined ? max : Number(prefixText);
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max || (prefixText ?? '').trim() !== (prefixText ?? '')) {
    throw new Error(`'${text}' has an invalid prefix length (0-${max})`);
  }
  return { address, prefix, family: version === 4 ? 'ipv4' : 'ipv6' };
}

/** Validates and compiles a policy from the wire; throws with a message on bad input. */
export function compileAccess(policy: unknown): CompiledAccess {
  const p = (typeof policy === 'object' && policy !== null ? policy : {}) as Record<string, unknown>;
  let basicAuth: Buffer | undefined;
  const digest = p['basicAuthSha256'];
  if (digest !== undefined) {
    if (typeof digest !== 'string' || !/^[0-9a-f]{64}$/.test(digest)) throw new Error('invalid basic auth digest');
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
  return { basicAuth, allow };
}

/** Normalises the socket's address (IPv4-mapped IPv6 → IPv4). */
export function visitorAddress(req: IncomingMessage): string {
  const a = req.socket.remoteAddress ?? '';
  return a.startsWith('::ffff:') && net.isIPv4(a.slice(7)) ? a.slice(7) : a;
}

/** The page to answer with when `req` may not visit, else undefined. */
export function checkAccess(req: IncomingMessage, access: CompiledAccess, hostname: string): ErrorPage | undefined {
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
