/**
 * Before the CA is asked to validate: wait until the TXT values are visible at the
 * zone's authoritative servers (or at `--acme-dns-resolver`), so a slow DNS host does
 * not fail a validation and burn a CA attempt. Each poll uses a fresh resolver: a
 * resolver's cache would keep answering "no such record".
 */
import { lookup, Resolver } from 'node:dns/promises';
import { AcmeError } from './errors.js';
import { parseHostPort } from './rfc2136.js';

export interface PropagationOptions {
  /** Ask this server (`HOST:PORT`) instead of the zone's authoritative servers. */
  resolver?: string | undefined;
  /** Give up after this long. Default 120 s. */
  timeoutMs?: number;
  /** Poll interval. Default 2 s. */
  intervalMs?: number;
  signal?: AbortSignal;
}

function serverAddress(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** The servers to ask: the resolver given, else every address of the zone's NS records. */
export async function authoritativeServers(
  name: string,
  options: PropagationOptions,
): Promise<string[]> {
  if (options.resolver !== undefined) {
    const { host, port } = parseHostPort(options.resolver, 53);
    return [serverAddress(host, port)];
  }
  const system = new Resolver({ timeout: 5_000, tries: 2 });
  const labels = name.replace(/\.$/, '').split('.');
  for (let i = 0; i < labels.length - 1; i++) {
    const zone = labels.slice(i).join('.');
    let ns: string[];
    try {
      ns = await system.resolveNs(zone);
    } catch {
      continue; // not a zone cut: go up
    }
    const addresses: string[] = [];
    for (const host of ns) {
      try {
        for (const a of await lookup(host, { all: true }))
          addresses.push(serverAddress(a.address, 53));
      } catch {
        // an NS without an address: ask the others
      }
    }
    if (addresses.length > 0) return addresses;
  }
  throw new AcmeError(
    'QT_ERR_ACME_PROPAGATION',
    `cannot find the authoritative DNS servers of ${name}; check the domain's NS records, or set --acme-dns-resolver HOST:PORT`,
  );
}

async function txtAt(server: string, name: string): Promise<string[]> {
  const resolver = new Resolver({ timeout: 3_000, tries: 1 });
  resolver.setServers([server]);
  try {
    return (await resolver.resolveTxt(name)).map((chunks) => chunks.join(''));
  } catch {
    return []; // NXDOMAIN, NODATA, timeout: not there (yet)
  }
}

/** Resolves once every value is visible at every server; rejects after the timeout. */
export async function waitForTxt(
  name: string,
  values: readonly string[],
  options: PropagationOptions = {},
): Promise<void> {
  const timeoutMs = options.timeoutMs ?? 120_000;
  const intervalMs = options.intervalMs ?? 2_000;
  const servers = await authoritativeServers(name, options);
  const deadline = Date.now() + timeoutMs;
  const pending = new Set(servers);
  for (;;) {
    for (const server of [...pending]) {
      const seen = await txtAt(server, name);
      if (values.every((v) => seen.includes(v))) pending.delete(server);
    }
    if (pending.size === 0) return;
    if (Date.now() >= deadline || options.signal?.aborted === true) break;
    await new Promise((r) =>
      setTimeout(r, Math.min(intervalMs, Math.max(0, deadline - Date.now()))),
    );
  }
  const server = [...pending][0] ?? '';
  throw new AcmeError(
    'QT_ERR_ACME_PROPAGATION',
    `the TXT record ${name} (value ${values.map((v) => `"${v}"`).join(', ')}) did not appear at DNS server ${server} within ${Math.round(timeoutMs / 1000)} s; check that the DNS provider really updates that zone${options.resolver === undefined ? ' (or use --acme-dns-resolver for split-horizon DNS)' : ''}, or raise --acme-dns-timeout`,
  );
}
