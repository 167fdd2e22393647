/**
 * Configuration: defaults < config file < environment (QUICK_TUNNEL_*) < flags, parsed
 * once into a frozen object. This is the only module that reads process.env.
 */
import { existsSync, readFileSync } from 'node:fs';
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
  noColor: boolean;
  httpsProxy: string | undefined;
  httpProxy: string | undefined;
  noProxy: string | undefined;
}

/** Reads the environment once. */
export function readEnvironment(env: NodeJS.ProcessEnv = process.env): Environment {
  const configHome = env['XDG_CONFIG_HOME'] || path.join(os.homedir(), '.config');
  return Object.freeze({
    relay: env['QUICK_TUNNEL_RELAY'] || undefined,
    token: env['QUICK_TUNNEL_TOKEN'] || undefined,
    configDir: env['QUICK_TUNNEL_CONFIG_DIR'] || path.join(configHome, 'quick-tunnel'),
    noColor: env['NO_COLOR'] !== undefined && env['NO_COLOR'] !== '',
    httpsProxy: env['HTTPS_PROXY'] || env['https_proxy'] || undefined,
    httpProxy: env['HTTP_PROXY'] || env['http_proxy'] || undefined,
    noProxy: env['NO_PROXY'] || env['no_proxy'] || undefined,
  });
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
