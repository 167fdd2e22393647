/**
 * Configuration: defaults < config file < environment (QUICK_TUNNEL_*) < flags, parsed
 * once into a frozen object. This is the only module that reads process.env.
 */
import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { getProxyForUrl } from 'proxy-from-env';
import { ConfigError } from '../shared/errors.js';
import { parseFingerprint } from '../shared/fingerprint.js';

/** What the config file (`<config dir>/config.json`) may hold. */
export interface FileConfig {
  relay?: string;
  token?: string;
  ca?: string;
  /** The relay certificate's SHA-256 fingerprint (`SHA256:AB:…`), from `login --ca-fingerprint`. */
  caFingerprint?: string;
}

export interface Environment {
  relay: string | undefined;
  token: string | undefined;
  configDir: string;
  /** `QUICK_TUNNEL_LAN_ADDRESS`: the address `--lan` uses instead of the detected one. */
  lanAddress: string | undefined;
  noColor: boolean;
  /**
   * Running under CI (`CI` / `CONTINUOUS_INTEGRATION` set, not 0/false): Ink draws
   * nothing live there, so the CLI prints lines instead of the TUI.
   */
  ci: boolean;
  /** QUICK_TUNNEL_ACME_TSIG_SECRET: the relay's RFC 2136 TSIG secret (base64). */
  acmeTsigSecret: string | undefined;
  /** Relay cluster mode: the Redis URL (QUICK_TUNNEL_REDIS). */
  redis: string | undefined;
  /** Relay cluster mode: the secret relays share (QUICK_TUNNEL_CLUSTER_SECRET). */
  clusterSecret: string | undefined;
  /** The relay's default data dir: `$XDG_DATA_HOME/quick-tunnel/relay` (~/.local/share/…). */
  relayDataDir: string;
}

/** Reads the environment once. */
export function readEnvironment(env: NodeJS.ProcessEnv = process.env): Environment {
  const configHome = env['XDG_CONFIG_HOME'] || path.join(os.homedir(), '.config');
  const dataHome = env['XDG_DATA_HOME'] || path.join(os.homedir(), '.local', 'share');
  return Object.freeze({
    relay: env['QUICK_TUNNEL_RELAY'] || undefined,
    token: env['QUICK_TUNNEL_TOKEN'] || undefined,
    configDir: env['QUICK_TUNNEL_CONFIG_DIR'] || path.join(configHome, 'quick-tunnel'),
    lanAddress: env['QUICK_TUNNEL_LAN_ADDRESS'] || undefined,
    noColor: env['NO_COLOR'] !== undefined && env['NO_COLOR'] !== '',
    ci: ['CI', 'CONTINUOUS_INTEGRATION'].some(
      (k) => env[k] !== undefined && env[k] !== '0' && env[k] !== 'false',
    ),
    acmeTsigSecret: env['QUICK_TUNNEL_ACME_TSIG_SECRET'] || undefined,
    redis: env['QUICK_TUNNEL_REDIS'] || undefined,
    clusterSecret: env['QUICK_TUNNEL_CLUSTER_SECRET'] || undefined,
    relayDataDir: path.join(dataHome, 'quick-tunnel', 'relay'),
  });
}

/**
 * Selects React's production build for the TUI unless NODE_ENV says otherwise: without
 * NODE_ENV React loads its development build, several times slower (per-render dev
 * checks, async stack tracking) and heavier on memory. Call before importing Ink.
 */
export function preferProductionReact(env: NodeJS.ProcessEnv = process.env): void {
  env['NODE_ENV'] ??= 'production';
}

/**
 * The HTTP proxy to reach `target` (a relay URL) through, or undefined to connect
 * directly: HTTPS_PROXY for an https relay, HTTP_PROXY for a plain-http one, else
 * ALL_PROXY; none when NO_PROXY lists the host (`.example.com`, `*`, `host:port`);
 * lower-case names too. proxy-from-env decides, reading process.env itself at the call,
 * which is why this lives in the config module. A proxy given without a scheme is
 * http:// (as curl takes it; proxy-from-env would use the relay's https://). Anything
 * but an http(s):// proxy URL is a ConfigError.
 */
export function relayProxy(target: URL): URL | undefined {
  const env = process.env;
  const chosen = getProxyForUrl(target.href);
  if (chosen === '') return undefined;
  const scheme = target.protocol.replace(/:$/, '');
  const given = [`${scheme}_proxy`, 'all_proxy']
    .map((name) => env[name] || env[name.toUpperCase()])
    .find((value) => value !== undefined && value !== '');
  const raw = given !== undefined && !given.includes('://') ? `http://${given}` : chosen;
  let url: URL | undefined;
  try {
    url = new URL(raw);
  } catch {
    url = undefined;
  }
  if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
    throw new ConfigError(
      `the proxy setting '${given ?? chosen}' is not an http:// or https:// URL`,
    );
  }
  return url;
}

export function configFilePath(configDir: string): string {
  return path.join(configDir, 'config.json');
}

/** Loads the config file; a missing file is an empty config, a broken one an error. */
export function readConfigFile(configDir: string): FileConfig {
  const file = configFilePath(configDir);
  if (!existsSync(file)) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new ConfigError(`the config file ${file} is not valid JSON; fix or delete it`, {
      cause: err,
    });
  }
  if (typeof parsed !== 'object' || parsed === null) {
    throw new ConfigError(`the config file ${file} must hold a JSON object`);
  }
  const v = parsed as Record<string, unknown>;
  const out: FileConfig = {};
  for (const key of ['relay', 'token', 'ca', 'caFingerprint'] as const) {
    const x = v[key];
    if (typeof x === 'string' && x !== '') out[key] = x;
  }
  return out;
}

/**
 * Normalises a relay URL given by the user: https://host[:port] (http allowed). `from`
 * names where it came from (see RelaySettings.from), for the error.
 */
export function parseRelayUrl(input: string, from?: string): URL {
  const bad = (): ConfigError =>
    new ConfigError(
      `'${input}'${from === undefined ? '' : ` (from ${from})`} is not a relay URL: use https://relay.example.com[:port]`,
    );
  let url: URL;
  try {
    url = new URL(/^[a-z]+:\/\//i.test(input) ? input : `https://${input}`);
  } catch {
    throw bad();
  }
  if (url.protocol === 'wss:') url.protocol = 'https:';
  if (url.protocol === 'ws:') url.protocol = 'http:';
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw bad();
  return url;
}

/** Writes the config file atomically, readable by its owner only (it may hold a token). */
export async function writeConfigFile(configDir: string, config: FileConfig): Promise<string> {
  const file = configFilePath(configDir);
  await writePrivateFile(file, `${JSON.stringify(config, null, 2)}\n`);
  return file;
}

/**
 * Writes `data` to `file` with mode 0600 (directories 0700), atomically: a temp file
 * renamed over the target, so a crash never leaves half a file.
 */
export async function writePrivateFile(file: string, data: string): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    await writeFile(tmp, data, { mode: 0o600 });
    await chmod(tmp, 0o600); // an existing temp file keeps its mode otherwise
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/** Where a command talks to: flags < environment < config file, resolved once. */
export interface RelaySettings {
  relay: URL | undefined;
  /** More relays of the same cluster (`--relay A,B,C`: `relay` is A). */
  moreRelays?: URL[];
  token: string | undefined;
  caFile: string | undefined;
  /** Pinned relay certificate, colon-separated upper-case hex (see cli/tunnel/pin.ts). */
  caFingerprint: string | undefined;
  configDir: string;
  /**
   * Where each setting came from, as error messages name it: `--token`,
   * `QUICK_TUNNEL_TOKEN`, `the config file /home/me/.config/quick-tunnel/config.json`.
   */
  from: { relay?: string; token?: string; caFile?: string; caFingerprint?: string };
}

/**
 * Resolves the relay, token and CA for a command (flags win, then env, then the file).
 * `env` is the command's one readEnvironment(): this function reads no process state.
 */
export function resolveRelaySettings(
  flags: {
    relay?: string | undefined;
    token?: string | undefined;
    ca?: string | undefined;
    caFingerprint?: string | undefined;
  },
  env: Environment,
): RelaySettings {
  const file = readConfigFile(env.configDir);
  const fileName = `the config file ${configFilePath(env.configDir)}`;
  const from: RelaySettings['from'] = {};
  const pick = <T>(
    key: keyof RelaySettings['from'],
    choices: [T | undefined, string][],
  ): T | undefined => {
    for (const [value, source] of choices) {
      if (value !== undefined) {
        from[key] = source;
        return value;
      }
    }
    return undefined;
  };
  const relay = pick('relay', [
    [flags.relay, '--relay'],
    [env.relay, 'QUICK_TUNNEL_RELAY'],
    [file.relay, fileName],
  ]);
  const token = pick('token', [
    [flags.token, '--token'],
    [env.token, 'QUICK_TUNNEL_TOKEN'],
    [file.token, fileName],
  ]);
  const caFile = pick('caFile', [
    [flags.ca, '--ca'],
    [file.ca, fileName],
  ]);
  const fingerprint = pick('caFingerprint', [
    [flags.caFingerprint, '--ca-fingerprint'],
    [file.caFingerprint, fileName],
  ]);
  // Several relays of one cluster: comma-separated.
  const relayList = (relay ?? '')
    .split(',')
    .map((u) => u.trim())
    .filter((u) => u !== '');
  return Object.freeze({
    relay: relayList[0] === undefined ? undefined : parseRelayUrl(relayList[0], from.relay),
    moreRelays: relayList.slice(1).map((u) => parseRelayUrl(u, from.relay)),
    token,
    caFile,
    caFingerprint:
      fingerprint === undefined ? undefined : parseFingerprint(fingerprint, from.caFingerprint),
    configDir: env.configDir,
    from: Object.freeze(from),
  });
}

/**
 * Reads a CA file (PEM) and checks that it holds a certificate, with an error that names
 * the file and where it came from (`--ca`, the config file).
 */
export async function readCaFile(
  caFile: string | undefined,
  from = '--ca',
): Promise<string | undefined> {
  if (caFile === undefined) return undefined;
  let text: string;
  try {
    text = await readFile(caFile, 'utf8');
  } catch (err) {
    throw new ConfigError(
      `cannot read the CA file ${caFile} (from ${from}): ${(err as Error).message}`,
      { cause: err },
    );
  }
  checkCaPem(text, caFile, from);
  return text;
}

/** Refuses a CA file that holds no PEM certificate (`--ca /etc/hostname`). */
export function checkCaPem(text: string, caFile: string, from = '--ca'): void {
  const blocks = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  const problem =
    blocks.length === 0
      ? /-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text)
        ? 'it holds a private key, not a certificate: give the certificate (.crt) the relay printed, never its key'
        : 'it holds no PEM certificate (-----BEGIN CERTIFICATE-----)'
      : undefined;
  let parseError: string | undefined;
  if (problem === undefined) {
    for (const block of blocks) {
      try {
        new X509Certificate(block);
      } catch (err) {
        parseError = `a certificate in it does not parse (${(err as Error).message})`;
        break;
      }
    }
  }
  const reason = problem ?? parseError;
  if (reason !== undefined) {
    throw new ConfigError(`the CA file ${caFile} (from ${from}) is not usable: ${reason}`, {
      hint: "pass the relay's certificate file it printed at start, or pin it with --ca-fingerprint SHA256:…",
    });
  }
}

/**
 * The relay a command uses when no --relay is given, for --help: the environment's, the
 * config file's (naming the file), or the embedded local relay. Never throws (a broken
 * config file is reported when a command runs).
 */
export function effectiveDefaultRelay(env: Environment = readEnvironment()): string {
  if (env.relay !== undefined) return `${env.relay} (from QUICK_TUNNEL_RELAY)`;
  try {
    const file = readConfigFile(env.configDir);
    if (file.relay !== undefined) {
      return `${file.relay} (from ${configFilePath(env.configDir)}; \`quick-tunnel logout\` forgets it)`;
    }
  } catch {
    return `see ${configFilePath(env.configDir)}: it does not parse`;
  }
  return 'a local relay in this process';
}
