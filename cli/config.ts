/**
 * Configuration: defaults < config file < environment (QUICK_TUNNEL_*) < flags, parsed
 * once into a frozen object. This is the only module that reads process.env.
 */
import { existsSync, readFileSync } from 'node:fs';
import { chmod, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ConfigError } from '../shared/errors.js';

/** What the config file (`<config dir>/config.json`) may hold. */
export interface FileConfig {
  relay?: string;
  token?: string;
  ca?: string;
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
  httpsProxy: string | undefined;
  httpProxy: string | undefined;
  noProxy: string | undefined;
  /** QUICK_TUNNEL_ACME_TSIG_SECRET: the relay's RFC 2136 TSIG secret (base64). */
  acmeTsigSecret: string | undefined;
}

/** Reads the environment once. */
export function readEnvironment(env: NodeJS.ProcessEnv = process.env): Environment {
  const configHome = env['XDG_CONFIG_HOME'] || path.join(os.homedir(), '.config');
  return Object.freeze({
    relay: env['QUICK_TUNNEL_RELAY'] || undefined,
    token: env['QUICK_TUNNEL_TOKEN'] || undefined,
    configDir: env['QUICK_TUNNEL_CONFIG_DIR'] || path.join(configHome, 'quick-tunnel'),
    lanAddress: env['QUICK_TUNNEL_LAN_ADDRESS'] || undefined,
    noColor: env['NO_COLOR'] !== undefined && env['NO_COLOR'] !== '',
    ci: ['CI', 'CONTINUOUS_INTEGRATION'].some(
      (k) => env[k] !== undefined && env[k] !== '0' && env[k] !== 'false',
    ),
    httpsProxy: env['HTTPS_PROXY'] || env['https_proxy'] || undefined,
    httpProxy: env['HTTP_PROXY'] || env['http_proxy'] || undefined,
    noProxy: env['NO_PROXY'] || env['no_proxy'] || undefined,
    acmeTsigSecret: env['QUICK_TUNNEL_ACME_TSIG_SECRET'] || undefined,
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
  for (const key of ['relay', 'token', 'ca'] as const) {
    const x = v[key];
    if (typeof x === 'string' && x !== '') out[key] = x;
  }
  return out;
}

/** Normalises a relay URL given by the user: https://host[:port] (http allowed). */
export function parseRelayUrl(input: string): URL {
  let url: URL;
  try {
    url = new URL(/^[a-z]+:\/\//i.test(input) ? input : `https://${input}`);
  } catch {
    throw new ConfigError(`'${input}' is not a relay URL: use https://relay.example.com[:port]`);
  }
  if (url.protocol === 'wss:') url.protocol = 'https:';
  if (url.protocol === 'ws:') url.protocol = 'http:';
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new ConfigError(`'${input}' is not a relay URL: use https://relay.example.com[:port]`);
  }
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
  token: string | undefined;
  caFile: string | undefined;
  configDir: string;
}

/** Resolves the relay, token and CA file for a command (flags win, then env, then the file). */
export function resolveRelaySettings(
  flags: { relay?: string | undefined; token?: string | undefined; ca?: string | undefined },
  env: Environment = readEnvironment(),
): RelaySettings {
  const file = readConfigFile(env.configDir);
  const relay = flags.relay ?? env.relay ?? file.relay;
  return Object.freeze({
    relay: relay === undefined ? undefined : parseRelayUrl(relay),
    token: flags.token ?? env.token ?? file.token,
    caFile: flags.ca ?? file.ca,
    configDir: env.configDir,
  });
}

/** Reads a --ca file (PEM), with an error that names the file. */
export async function readCaFile(caFile: string | undefined): Promise<string | undefined> {
  if (caFile === undefined) return undefined;
  try {
    return await readFile(caFile, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read the --ca file ${caFile}: ${(err as Error).message}`, {
      cause: err,
    });
  }
}
