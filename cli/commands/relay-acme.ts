/**
 * `quick-tunnel relay --acme …`: checks the ACME flags and turns them into the relay's
 * AcmeSettings (the DNS provider built, files read). Secrets (TSIG, acme-dns key) come
 * from files or the environment, never from argv, and are never logged.
 */
import { constants } from 'node:fs';
import { access, readFile } from 'node:fs/promises';
import { ConfigError } from '../../shared/errors.js';
import { acmeDnsProvider, execProvider, type DnsProvider } from '../../relay/acme/dns-provider.js';
import {
  LETS_ENCRYPT_DIRECTORY,
  LETS_ENCRYPT_STAGING_DIRECTORY,
  type AcmeSettings,
} from '../../relay/acme/manager.js';
import { parseHostPort, rfc2136Provider } from '../../relay/acme/rfc2136.js';

export interface AcmeFlags {
  acme: boolean;
  email?: string | undefined;
  /** `exec:/path/to/hook`, `rfc2136` or `acme-dns`. */
  dns?: string | undefined;
  directory?: string | undefined;
  staging?: boolean | undefined;
  directoryCa?: string | undefined;
  resolver?: string | undefined;
  eabKid?: string | undefined;
  eabHmacKey?: string | undefined;
  /** Seconds the TXT record may take to appear. */
  dnsTimeout?: number | undefined;
  /** rfc2136 */
  dnsServer?: string | undefined;
  tsigKey?: string | undefined;
  tsigSecretFile?: string | undefined;
  dnsZone?: string | undefined;
  /** acme-dns */
  dnsApi?: string | undefined;
  dnsAccount?: string | undefined;
}

/** Flags (kebab-case) that only mean something with --acme, by AcmeFlags key. */
const ACME_ONLY: [keyof AcmeFlags, string][] = [
  ['email', '--acme-email'],
  ['dns', '--acme-dns'],
  ['directory', '--acme-directory'],
  ['directoryCa', '--acme-directory-ca'],
  ['resolver', '--acme-dns-resolver'],
  ['eabKid', '--acme-eab-kid'],
  ['eabHmacKey', '--acme-eab-hmac-key'],
  ['dnsServer', '--acme-dns-server'],
  ['tsigKey', '--acme-dns-tsig-key'],
  ['tsigSecretFile', '--acme-dns-tsig-secret-file'],
  ['dnsZone', '--acme-dns-zone'],
  ['dnsApi', '--acme-dns-api'],
  ['dnsAccount', '--acme-dns-account'],
];

async function readText(file: string, flag: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read ${flag} ${file}: ${(err as Error).message}`, { cause: err });
  }
}

function checkHostPort(value: string, flag: string): void {
  try {
    parseHostPort(value, 53);
  } catch {
    throw new ConfigError(`${flag} must be HOST:PORT (e.g. 192.0.2.53:53), got '${value}'`);
  }
}

/**
 * Returns the settings for `--acme`, or undefined without it. `tsigSecretEnv` is
 * QUICK_TUNNEL_ACME_TSIG_SECRET (read by cli/config.ts).
 */
export async function acmeSettingsFromFlags(
  flags: AcmeFlags,
  context: { domain: string; hasCertFiles: boolean; tsigSecretEnv?: string | undefined },
): Promise<AcmeSettings | undefined> {
  if (!flags.acme) {
    const stray = ACME_ONLY.find(([k]) => flags[k] !== undefined);
    if (stray !== undefined || flags.staging === true) {
      throw new ConfigError(`${stray?.[1] ?? '--acme-staging'} only applies with --acme`);
    }
    return undefined;
  }
  if (context.hasCertFiles) {
    throw new ConfigError('--acme and --cert/--key exclude each other: pick one');
  }
  if (context.domain === 'localhost' || !context.domain.includes('.')) {
    throw new ConfigError(
      `--acme needs --domain set to the relay's public domain (a CA will not certify '${context.domain}')`,
    );
  }
  if (flags.email === undefined || !/^[^@\s]+@[^@\s]+$/.test(flags.email)) {
    throw new ConfigError(
      '--acme needs --acme-email you@example.com (the CA mails expiry notices)',
    );
  }
  if (flags.dns === undefined) {
    throw new ConfigError(
      '--acme needs --acme-dns exec:/path/to/hook | rfc2136 | acme-dns: how to set the TXT record',
    );
  }
  if (flags.directory !== undefined && flags.staging === true) {
    throw new ConfigError('--acme-directory and --acme-staging exclude each other');
  }
  const directoryUrl =
    flags.directory ??
    (flags.staging === true ? LETS_ENCRYPT_STAGING_DIRECTORY : LETS_ENCRYPT_DIRECTORY);
  if (!/^https?:$/.test(URL.parse(directoryUrl)?.protocol ?? '')) {
    throw new ConfigError(`--acme-directory must be an https:// URL, got '${directoryUrl}'`);
  }
  if ((flags.eabKid === undefined) !== (flags.eabHmacKey === undefined)) {
    throw new ConfigError('--acme-eab-kid and --acme-eab-hmac-key go together');
  }
  if (flags.resolver !== undefined) checkHostPort(flags.resolver, '--acme-dns-resolver');
  const timeoutS = flags.dnsTimeout ?? 120;
  if (!Number.isFinite(timeoutS) || timeoutS <= 0) {
    throw new ConfigError(
      `--acme-dns-timeout must be a number of seconds above 0, got ${timeoutS}`,
    );
  }
  const dns = await dnsProvider(flags, context.tsigSecretEnv);
  return {
    email: flags.email,
    directoryUrl,
    directoryCa:
      flags.directoryCa === undefined
        ? undefined
        : await readText(flags.directoryCa, '--acme-directory-ca'),
    eab:
      flags.eabKid === undefined || flags.eabHmacKey === undefined
        ? undefined
        : { kid: flags.eabKid, hmacKey: flags.eabHmacKey },
    dns,
    resolver: flags.resolver,
    propagationTimeoutMs: timeoutS * 1000,
  };
}

async function dnsProvider(
  flags: AcmeFlags,
  tsigSecretEnv: string | undefined,
): Promise<DnsProvider> {
  const kind = flags.dns ?? '';
  if (kind.startsWith('exec:')) {
    const hook = kind.slice('exec:'.length);
    try {
      await access(hook, constants.X_OK);
    } catch {
      throw new ConfigError(
        `--acme-dns exec:${hook}: no executable file there (it is run as 'HOOK present|cleanup FQDN VALUE')`,
      );
    }
    return execProvider(hook);
  }
  if (kind === 'rfc2136') {
    if (flags.dnsServer === undefined || flags.tsigKey === undefined) {
      throw new ConfigError(
        '--acme-dns rfc2136 needs --acme-dns-server HOST:PORT and --acme-dns-tsig-key NAME (algorithm hmac-sha256)',
      );
    }
    checkHostPort(flags.dnsServer, '--acme-dns-server');
    const raw =
      flags.tsigSecretFile !== undefined
        ? await readText(flags.tsigSecretFile, '--acme-dns-tsig-secret-file')
        : tsigSecretEnv;
    if (raw === undefined) {
      throw new ConfigError(
        '--acme-dns rfc2136 needs the TSIG secret: --acme-dns-tsig-secret-file FILE or QUICK_TUNNEL_ACME_TSIG_SECRET (never on the command line)',
      );
    }
    // The file may be the bare base64 or BIND's key clause (secret "…";).
    const b64 = (/secret\s+"([^"]+)"/.exec(raw)?.[1] ?? raw).trim();
    const secret = Buffer.from(b64, 'base64');
    if (secret.length === 0 || !/^[A-Za-z0-9+/]+=*$/.test(b64)) {
      throw new ConfigError('the TSIG secret must be base64 (as tsig-keygen prints it)');
    }
    return rfc2136Provider({
      server: flags.dnsServer,
      key: { name: flags.tsigKey, secret },
      zone: flags.dnsZone,
    });
  }
  if (kind === 'acme-dns') {
    if (flags.dnsApi === undefined || flags.dnsAccount === undefined) {
      throw new ConfigError(
        '--acme-dns acme-dns needs --acme-dns-api URL and --acme-dns-account FILE (the JSON its /register answered)',
      );
    }
    let account: Record<string, unknown>;
    try {
      account = JSON.parse(await readText(flags.dnsAccount, '--acme-dns-account')) as Record<
        string,
        unknown
      >;
    } catch (err) {
      if (err instanceof ConfigError) throw err;
      throw new ConfigError(`--acme-dns-account ${flags.dnsAccount} is not JSON`, { cause: err });
    }
    const str = (k: string): string | undefined =>
      typeof account[k] === 'string' ? (account[k] as string) : undefined;
    const username = str('username');
    const password = str('password');
    const subdomain = str('subdomain');
    if (username === undefined || password === undefined || subdomain === undefined) {
      throw new ConfigError(
        `--acme-dns-account ${flags.dnsAccount} needs "username", "password" and "subdomain" (and "fulldomain")`,
      );
    }
    return acmeDnsProvider({
      apiUrl: flags.dnsApi,
      username,
      password,
      subdomain,
      fulldomain: str('fulldomain'),
    });
  }
  throw new ConfigError(
    `--acme-dns must be exec:/path/to/hook, rfc2136 or acme-dns, got '${kind}'`,
  );
}
