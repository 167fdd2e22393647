/**
 * `--acme-dns rfc2136`: dynamic DNS updates (RFC 2136) signed with TSIG HMAC-SHA256,
 * sent over TCP to the primary server (BIND, Knot, PowerDNS). Adds exactly one TXT
 * value and deletes exactly that value (class NONE), never the whole RRset.
 */
import { randomInt } from 'node:crypto';
import { Resolver } from 'node:dns/promises';
import net from 'node:net';
import type { DnsProvider } from './dns-provider.js';
import {
  buildTxtUpdate,
  parseResponse,
  RCODES,
  signMessage,
  TSIG_ERRORS,
  verifyResponse,
  type TsigKey,
} from './dns-wire.js';
import { AcmeError } from './errors.js';

export interface Rfc2136Options {
  /** The primary server: `host:port` (port defaults to 53; IPv6 as `[::1]:53`). */
  server: string;
  key: TsigKey;
  /** The zone to update; default: found by asking the server for the SOA of DOMAIN and up. */
  zone?: string | undefined;
  timeoutMs?: number;
  /** Seconds since the epoch, for TSIG's time signed (tests use a fixed clock). */
  nowS?: () => number;
}

/** Largest answer read: an UPDATE answer is a header plus a TSIG record. */
const MAX_ANSWER_BYTES = 4096;

export function parseHostPort(value: string, defaultPort: number): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+))(?::(\d+))?$/.exec(value.trim());
  const host = m?.[1] ?? m?.[2];
  const port = m?.[3] === undefined ? defaultPort : Number(m[3]);
  if (host === undefined || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new RangeError(`'${value}' is not HOST:PORT`);
  }
  return { host, port };
}

export function rfc2136Provider(options: Rfc2136Options): DnsProvider {
  const { host, port } = parseHostPort(options.server, 53);
  const timeoutMs = options.timeoutMs ?? 10_000;
  const nowS = options.nowS ?? (() => Math.floor(Date.now() / 1000));
  const where = `${host}:${port}`;
  let zone: Promise<string> | undefined;

  const findZone = async (fqdn: string): Promise<string> => {
    if (options.zone !== undefined) return options.zone.replace(/\.$/, '');
    const resolver = new Resolver({ timeout: Math.min(timeoutMs, 5_000), tries: 2 });
    resolver.setServers([host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`]);
    const labels = fqdn.replace(/\.$/, '').split('.');
    for (let i = 1; i < labels.length - 1; i++) {
      const name = labels.slice(i).join('.');
      try {
        await resolver.resolveSoa(name);
        return name;
      } catch (err) {
        const code = (err as { code?: string }).code ?? '';
        if (code === 'ECONNREFUSED' || code === 'ETIMEOUT') {
          throw new AcmeError(
            'QT_ERR_ACME_DNS',
            `cannot reach the DNS server ${where} (${code}) to find the zone of ${fqdn}; check --acme-dns-server`,
            { cause: err },
          );
        }
        // not a zone apex (NODATA) or not served here: try the parent
      }
    }
    throw new AcmeError(
      'QT_ERR_ACME_DNS',
      `the DNS server ${where} is not authoritative for any zone above ${fqdn}; check --acme-dns-server, or name the zone with --acme-dns-zone`,
    );
  };

  const update = async (action: 'add' | 'delete', fqdn: string, value: string): Promise<void> => {
    zone ??= findZone(fqdn);
    let zoneName: string;
    try {
      zoneName = await zone;
    } catch (err) {
      zone = undefined; // ask again next time
      throw err;
    }
    const id = randomInt(0, 0x10000);
    const message = buildTxtUpdate(id, { zone: zoneName, name: fqdn, value, action, ttlS: 60 });
    const { signed, mac } = signMessage(message, options.key, nowS());
    const answer = await exchangeTcp(host, port, signed, timeoutMs).catch((err: unknown) => {
      throw new AcmeError(
        'QT_ERR_ACME_DNS',
        `cannot send the DNS update to ${where}: ${(err as Error).message}; check --acme-dns-server`,
        { cause: err },
      );
    });
    let parsed;
    try {
      parsed = parseResponse(answer);
    } catch (err) {
      throw new AcmeError('QT_ERR_ACME_DNS', `${where} sent a malformed DNS answer`, {
        cause: err,
      });
    }
    if (parsed.id !== id || !parsed.isResponse) {
      throw new AcmeError('QT_ERR_ACME_DNS', `${where} answered a different DNS message`);
    }
    const tsigError = parsed.tsig?.error ?? 0;
    if (tsigError !== 0 || parsed.rcode !== 0) {
      throw new AcmeError(
        'QT_ERR_ACME_DNS',
        describeFailure(where, options.key.name, zoneName, fqdn, parsed.rcode, tsigError),
        {
          retryable: parsed.rcode === 2, // SERVFAIL may pass
        },
      );
    }
    if (!verifyResponse(answer, parsed, options.key, mac)) {
      throw new AcmeError(
        'QT_ERR_ACME_DNS',
        `${where} accepted the DNS update but its answer is not signed with key '${options.key.name}': not trusting it`,
      );
    }
  };

  return {
    description: `rfc2136 ${where}`,
    present: (fqdn, value) => update('add', fqdn, value),
    cleanup: (fqdn, value) => update('delete', fqdn, value),
  };
}

function describeFailure(
  where: string,
  keyName: string,
  zone: string,
  fqdn: string,
  rcode: number,
  tsigError: number,
): string {
  const rc = RCODES[rcode] ?? `rcode ${rcode}`;
  if (tsigError === 16) {
    return `${where} refused the DNS update: TSIG BADSIG, the secret for key '${keyName}' does not match the server's; check --acme-dns-tsig-secret-file`;
  }
  if (tsigError === 17) {
    return `${where} refused the DNS update: TSIG BADKEY, the server has no key named '${keyName}' (hmac-sha256); check --acme-dns-tsig-key`;
  }
  if (tsigError === 18) {
    return `${where} refused the DNS update: TSIG BADTIME, this machine's clock and the DNS server's differ by more than 5 minutes`;
  }
  if (tsigError !== 0) {
    return `${where} refused the DNS update: TSIG ${TSIG_ERRORS[tsigError] ?? tsigError} (${rc})`;
  }
  if (rcode === 5) {
    return `${where} refused the DNS update (REFUSED): its update-policy must let key '${keyName}' change TXT records at ${fqdn}`;
  }
  if (rcode === 9 || rcode === 10) {
    return `${where} refused the DNS update (${rc}): it is not the primary server for zone '${zone}'; check --acme-dns-server / --acme-dns-zone`;
  }
  return `${where} refused the DNS update for ${fqdn} (${rc})`;
}

/** One DNS message over TCP (two-byte length prefix each way). */
function exchangeTcp(
  host: string,
  port: number,
  message: Buffer,
  timeoutMs: number,
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port });
    const chunks: Buffer[] = [];
    let received = 0;
    const done = (err: Error | undefined, answer?: Buffer): void => {
      socket.destroy();
      clearTimeout(timer);
      if (err !== undefined) reject(err);
      else resolve(answer ?? Buffer.alloc(0));
    };
    const timer = setTimeout(
      () => done(new Error(`no answer within ${timeoutMs / 1000} s`)),
      timeoutMs,
    );
    socket.once('error', (err) => done(err));
    socket.once('connect', () => {
      const len = Buffer.alloc(2);
      len.writeUInt16BE(message.length);
      socket.end(Buffer.concat([len, message]));
    });
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      received += chunk.length;
      if (received > MAX_ANSWER_BYTES + 2) {
        done(new Error('answer too large'));
        return;
      }
      const all = Buffer.concat(chunks);
      if (all.length >= 2 && all.length >= 2 + all.readUInt16BE(0)) {
        done(undefined, all.subarray(2, 2 + all.readUInt16BE(0)));
      }
    });
    socket.once('end', () => done(new Error('connection closed before a full answer')));
  });
}
