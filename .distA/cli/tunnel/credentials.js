/**
 * Named-tunnel credential files: `<config dir>/tunnels/<relay host>/<name>.json`, one
 * per relay and name, mode 0600. The file is what lets a machine serve the name: copy
 * it to run a replica elsewhere.
 */
import { readdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { ConfigError } from '../../shared/errors.js';
import { parseRelayUrl, writePrivateFile } from '../config.js';
/** Lowercases and trims a tunnel name as the relay does. */
export function normalizeTunnelName(name) {
    return name.trim().toLowerCase();
}
/** Directory holding the credential files for `relay` (host, with the port as `_PORT`). */
export function credentialDir(configDir, relay) {
    // `:` is not allowed in Windows file names; `_` can't appear in a host name.
    return path.join(configDir, 'tunnels', relay.host.replace(/[:[\]]/g, '_'));
}
export function credentialPath(configDir, relay, name) {
    const n = normalizeTunnelName(name);
    // Names are DNS labels; anything else could escape the directory.
    if (!/^[a-z0-9-]{1,63}$/.test(n)) {
        throw new ConfigError(`'${name}' is not a valid tunnel name: names use only lowercase letters, digits and hyphens`);
    }
    return path.join(credentialDir(configDir, relay), `${n}.json`);
}
export async function saveCredential(file, data) {
    await writePrivateFile(file, `${JSON.stringify(data, null, 2)}\n`);
}
/** Reads a credential file; undefined when there is none. */
export async function readCredential(file) {
    let text;
    try {
        text = await readFile(file, 'utf8');
    }
    catch (err) {
        if (err.code === 'ENOENT')
            return undefined;
        throw new ConfigError(`cannot read the credential file ${file}: ${err.message}`, {
            cause: err,
        });
    }
    let v;
    try {
        v = JSON.parse(text);
    }
    catch (err) {
        throw new ConfigError(`the credential file ${file} is not valid JSON`, { cause: err });
    }
    for (const key of ['relay', 'id', 'name', 'hostname', 'createdAt', 'credential']) {
        if (typeof v?.[key] !== 'string') {
            throw new ConfigError(`the credential file ${file} has no '${key}': it is not a tunnel credential`);
        }
    }
    return v;
}
/** Reads the credential of `name` on `relay`, or explains how to get one. */
export async function loadCredential(configDir, relay, name) {
    const file = credentialPath(configDir, relay, name);
    const data = await readCredential(file);
    if (data === undefined) {
        throw new ConfigError(`no credential for tunnel '${normalizeTunnelName(name)}' on ${relay.host} (looked in ${file}): ` +
            `create the tunnel with \`quick-tunnel tunnel create ${normalizeTunnelName(name)}\`, ` +
            `or copy its credential file there from the machine that created it`);
    }
    return { file, data };
}
/** Every credential stored for `relay`, sorted by name. */
export async function listCredentials(configDir, relay) {
    const dir = credentialDir(configDir, relay);
    let entries;
    try {
        entries = await readdir(dir);
    }
    catch (err) {
        if (err.code === 'ENOENT')
            return [];
        throw err;
    }
    const out = [];
    for (const entry of entries.filter((e) => e.endsWith('.json')).sort()) {
        const file = path.join(dir, entry);
        const data = await readCredential(file);
        if (data !== undefined)
            out.push({ file, data });
    }
    return out;
}
export async function removeCredential(file) {
    await rm(file, { force: true });
}
/** The name and credential a `--name NAME` run presents to the relay. */
export async function namedTunnelCredential(configDir, relayInput, name) {
    if (relayInput === undefined) {
        throw new ConfigError('named tunnels live on a relay: pass --relay URL (or save one with `quick-tunnel login --relay URL`)');
    }
    const { data } = await loadCredential(configDir, parseRelayUrl(relayInput), name);
    return { name: data.name, credential: data.credential };
}
//# sourceMappingURL=credentials.js.map