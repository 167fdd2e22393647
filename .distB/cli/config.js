/**
 * Configuration: defaults < config file < environment (QUICK_TUNNEL_*) < flags, parsed
 * once into a frozen object. This is the only module that reads process.env.
 */
import { existsSync, readFileSync } from 'node:fs';
import { chmod, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ConfigError } from '../shared/errors.js';
/** Reads the environment once. */
export function readEnvironment(env = process.env) {
    const configHome = env['XDG_CONFIG_HOME'] || path.join(os.homedir(), '.config');
    return Object.freeze({
        relay: env['QUICK_TUNNEL_RELAY'] || undefined,
        token: env['QUICK_TUNNEL_TOKEN'] || undefined,
        configDir: env['QUICK_TUNNEL_CONFIG_DIR'] || path.join(configHome, 'quick-tunnel'),
        noColor: env['NO_COLOR'] !== undefined && env['NO_COLOR'] !== '',
        ci: ['CI', 'CONTINUOUS_INTEGRATION'].some((k) => env[k] !== undefined && env[k] !== '0' && env[k] !== 'false'),
        httpsProxy: env['HTTPS_PROXY'] || env['https_proxy'] || undefined,
        httpProxy: env['HTTP_PROXY'] || env['http_proxy'] || undefined,
        noProxy: env['NO_PROXY'] || env['no_proxy'] || undefined,
    });
}
/**
 * Selects React's production build for the TUI unless NODE_ENV says otherwise: without
 * NODE_ENV React loads its development build, several times slower (per-render dev
 * checks, async stack tracking) and heavier on memory. Call before importing Ink.
 */
export function preferProductionReact(env = process.env) {
    env['NODE_ENV'] ??= 'production';
}
export function configFilePath(configDir) {
    return path.join(configDir, 'config.json');
}
/** Loads the config file; a missing file is an empty config, a broken one an error. */
export function readConfigFile(configDir) {
    const file = configFilePath(configDir);
    if (!existsSync(file))
        return {};
    let parsed;
    try {
        parsed = JSON.parse(readFileSync(file, 'utf8'));
    }
    catch (err) {
        throw new ConfigError(`the config file ${file} is not valid JSON; fix or delete it`, {
            cause: err,
        });
    }
    if (typeof parsed !== 'object' || parsed === null) {
        throw new ConfigError(`the config file ${file} must hold a JSON object`);
    }
    const v = parsed;
    const out = {};
    for (const key of ['relay', 'token', 'ca']) {
        const x = v[key];
        if (typeof x === 'string' && x !== '')
            out[key] = x;
    }
    return out;
}
/** Normalises a relay URL given by the user: https://host[:port] (http allowed). */
export function parseRelayUrl(input) {
    let url;
    try {
        url = new URL(/^[a-z]+:\/\//i.test(input) ? input : `https://${input}`);
    }
    catch {
        throw new ConfigError(`'${input}' is not a relay URL: use https://relay.example.com[:port]`);
    }
    if (url.protocol === 'wss:')
        url.protocol = 'https:';
    if (url.protocol === 'ws:')
        url.protocol = 'http:';
    if (url.protocol !== 'https:' && url.protocol !== 'http:') {
        throw new ConfigError(`'${input}' is not a relay URL: use https://relay.example.com[:port]`);
    }
    return url;
}
/** Writes the config file atomically, readable by its owner only (it may hold a token). */
export async function writeConfigFile(configDir, config) {
    const file = configFilePath(configDir);
    await writePrivateFile(file, `${JSON.stringify(config, null, 2)}\n`);
    return file;
}
/**
 * Writes `data` to `file` with mode 0600 (directories 0700), atomically: a temp file
 * renamed over the target, so a crash never leaves half a file.
 */
export async function writePrivateFile(file, data) {
    await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
    const tmp = `${file}.${process.pid}.tmp`;
    try {
        await writeFile(tmp, data, { mode: 0o600 });
        await chmod(tmp, 0o600); // an existing temp file keeps its mode otherwise
        await rename(tmp, file);
    }
    catch (err) {
        await rm(tmp, { force: true });
        throw err;
    }
}
/** Resolves the relay, token and CA file for a command (flags win, then env, then the file). */
export function resolveRelaySettings(flags, env = readEnvironment()) {
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
export async function readCaFile(caFile) {
    if (caFile === undefined)
        return undefined;
    try {
        return await readFile(caFile, 'utf8');
    }
    catch (err) {
        throw new ConfigError(`cannot read the --ca file ${caFile}: ${err.message}`, {
            cause: err,
        });
    }
}
//# sourceMappingURL=config.js.map