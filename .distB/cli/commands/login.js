/**
 * `quick-tunnel login --relay URL [--token TOKEN] [--ca FILE]`: saves the default relay
 * (and its token and CA) to `<config dir>/config.json`, mode 0600, so every command
 * uses it without flags. Checks that the relay answers, and warns if it does not.
 */
import { access } from 'node:fs/promises';
import path from 'node:path';
import { ConfigError } from '../../shared/errors.js';
import { parseRelayUrl, readCaFile, readConfigFile, readEnvironment, writeConfigFile, } from '../config.js';
import { relayApi } from '../tunnel/api.js';
import { proxyAgent, proxyFor } from '../tunnel/proxy-agent.js';
export async function runLogin(opts, io = {
    out: (l) => void process.stdout.write(`${l}\n`),
    err: (l) => void process.stderr.write(`${l}\n`),
}) {
    const env = readEnvironment();
    const relay = parseRelayUrl(opts.relay);
    const relayText = relay.href.replace(/\/$/, '');
    const previous = readConfigFile(env.configDir);
    const sameRelay = previous.relay !== undefined && safeHref(previous.relay) === relayText;
    const config = { relay: relayText };
    // A token or CA saved for another relay would only cause confusing refusals.
    const token = opts.token ?? (sameRelay ? previous.token : undefined);
    if (token !== undefined)
        config.token = token;
    let caFile = opts.ca === undefined ? (sameRelay ? previous.ca : undefined) : path.resolve(opts.ca);
    if (caFile !== undefined) {
        try {
            await access(caFile);
        }
        catch (err) {
            if (opts.ca !== undefined) {
                throw new ConfigError(`cannot read the --ca file ${caFile}: ${err.message}`, {
                    cause: err,
                });
            }
            caFile = undefined;
        }
    }
    if (caFile !== undefined)
        config.ca = caFile;
    try {
        const proxy = proxyFor(relay, env);
        await relayApi.health({
            relay,
            ca: await readCaFile(caFile),
            agent: proxy === undefined ? undefined : proxyAgent(proxy, relay.protocol === 'https:'),
            timeoutMs: 10_000,
        });
    }
    catch (err) {
        io.err(`warning: could not reach the relay to check it (${err.message}); saving anyway`);
    }
    const file = await writeConfigFile(env.configDir, config);
    io.out(`Saved ${relayText} as the default relay in ${file} (mode 0600)`);
    io.out(`  token: ${config.token !== undefined ? 'saved' : 'none'}`);
    if (config.ca !== undefined)
        io.out(`  CA:    ${config.ca}`);
    return 0;
}
function safeHref(input) {
    try {
        return parseRelayUrl(input).href.replace(/\/$/, '');
    }
    catch {
        return undefined;
    }
}
//# sourceMappingURL=login.js.map