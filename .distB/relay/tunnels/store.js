/**
 * The durable store of named-tunnel reservations: id, name, credential hash, created
 * and last-seen times. Kept apart from the live connections (the registry), so a
 * reconnect or a relay restart never re-creates anything.
 *
 * `TunnelStore` is the small interface the relay uses; `JsonFileTunnelStore` keeps
 * the records in memory and in one JSON file under the relay's data dir, rewritten
 * atomically (temp file + fsync + rename + directory fsync) so a crash mid-write
 * leaves the old or the new state, never a broken file. Another backend (SQLite,
 * Redis…) only has to implement the interface.
 */
import { open, readdir, readFile, rename, rm, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { QuickTunnelError } from '../../shared/errors.js';
export class NameTakenError extends QuickTunnelError {
    constructor(name) {
        super('QT_ERR_NAME_TAKEN', `the name '${name}' is already taken on this relay`);
    }
}
export class StoreError extends QuickTunnelError {
    constructor(message, options = {}) {
        super('QT_ERR_STORE', message, options);
    }
}
/** Records in memory only: for a relay without a data dir (the embedded local relay). */
export class MemoryTunnelStore {
    records = new Map();
    constructor(records = []) {
        for (const r of records)
            this.records.set(r.name, r);
    }
    async get(name) {
        return this.records.get(name);
    }
    async create(record) {
        if (this.records.has(record.name))
            throw new NameTakenError(record.name);
        this.records.set(record.name, record);
        try {
            await this.persist();
        }
        catch (err) {
            if (this.records.get(record.name) === record)
                this.records.delete(record.name);
            throw err;
        }
    }
    async delete(name) {
        const record = this.records.get(name);
        if (record === undefined)
            return false;
        this.records.delete(name);
        try {
            await this.persist();
        }
        catch (err) {
            if (!this.records.has(name))
                this.records.set(name, record);
            throw err;
        }
        return true;
    }
    async list() {
        return [...this.records.values()].sort((a, b) => a.name.localeCompare(b.name));
    }
    async touch(name, at) {
        const record = this.records.get(name);
        if (record === undefined)
            return;
        this.records.set(name, { ...record, lastSeenAt: at.toISOString() });
        await this.persist();
    }
    async close() { }
    /** Makes the current records durable; nothing to do in memory. */
    async persist() { }
}
/** Name of the store file in the data dir. */
export const STORE_FILE = 'tunnels.json';
const STORE_VERSION = 1;
/**
 * Records in `<dataDir>/tunnels.json`. Writes are serialised and coalesced: mutations
 * made while a write is running are saved together by the next one, and every caller
 * resolves once a write that includes its change is on disk.
 */
export class JsonFileTunnelStore extends MemoryTunnelStore {
    file;
    dir;
    chain = Promise.resolve();
    queued;
    tmpCounter = 0;
    constructor(dir, records) {
        super(records);
        this.dir = dir;
        this.file = path.join(dir, STORE_FILE);
    }
    /**
     * Loads the store from `dataDir` (a missing file is an empty store). Temp files left
     * by a write that crashed are removed: the rename never happened, so the store file
     * still holds the previous complete state.
     */
    static async open(dataDir) {
        await mkdir(dataDir, { recursive: true, mode: 0o700 });
        const file = path.join(dataDir, STORE_FILE);
        let records = [];
        let text;
        try {
            text = await readFile(file, 'utf8');
        }
        catch (err) {
            if (err.code !== 'ENOENT') {
                throw new StoreError(`cannot read the tunnel store ${file}: ${err.message}`, {
                    cause: err,
                });
            }
        }
        if (text !== undefined)
            records = parseStoreFile(text, file);
        for (const entry of await readdir(dataDir)) {
            if (entry.startsWith(`${STORE_FILE}.`) && entry.endsWith('.tmp')) {
                await rm(path.join(dataDir, entry), { force: true });
            }
        }
        return new JsonFileTunnelStore(dataDir, records);
    }
    async close() {
        await this.chain;
    }
    persist() {
        // One write queued at most: it snapshots the records when it starts, so it also
        // carries every change made while the previous write was running.
        this.queued ??= this.chain.then(() => {
            this.queued = undefined;
            return this.writeNow();
        });
        const queued = this.queued;
        this.chain = queued.catch(() => { });
        return queued;
    }
    async writeNow() {
        const body = { version: STORE_VERSION, tunnels: [...this.records.values()] };
        const data = `${JSON.stringify(body, null, 2)}\n`;
        const tmp = `${this.file}.${process.pid}.${++this.tmpCounter}.tmp`;
        try {
            const fh = await open(tmp, 'w', 0o600);
            try {
                await fh.writeFile(data, 'utf8');
                await fh.sync();
            }
            finally {
                await fh.close();
            }
            await rename(tmp, this.file);
        }
        catch (err) {
            await rm(tmp, { force: true }).catch(() => { });
            throw new StoreError(`cannot write the tunnel store ${this.file}: ${err.message}`, {
                cause: err,
            });
        }
        // Make the rename itself durable. Some platforms can't open a directory for
        // fsync (Windows): the file data is synced already, so that is best effort.
        try {
            const dh = await open(this.dir, 'r');
            try {
                await dh.sync();
            }
            finally {
                await dh.close();
            }
        }
        catch {
            // best effort, see above
        }
    }
}
function parseStoreFile(text, file) {
    let parsed;
    try {
        parsed = JSON.parse(text);
    }
    catch (err) {
        throw new StoreError(`the tunnel store ${file} is not valid JSON (${err.message}); restore it from a backup or move it away to start empty`, { cause: err });
    }
    const v = (typeof parsed === 'object' && parsed !== null ? parsed : {});
    if (typeof v['version'] === 'number' && v['version'] > STORE_VERSION) {
        throw new StoreError(`the tunnel store ${file} was written by a newer relay (format ${v['version']}); upgrade quick-tunnel`);
    }
    if (v['version'] !== STORE_VERSION || !Array.isArray(v['tunnels'])) {
        throw new StoreError(`the tunnel store ${file} is not a quick-tunnel store file`);
    }
    const records = [];
    for (const item of v['tunnels']) {
        const r = (typeof item === 'object' && item !== null ? item : {});
        const str = (k) => typeof r[k] === 'string' && r[k] !== '';
        if (!str('id') ||
            !str('name') ||
            !str('credentialHash') ||
            !str('createdAt') ||
            !(r['lastSeenAt'] === null || typeof r['lastSeenAt'] === 'string')) {
            throw new StoreError(`the tunnel store ${file} holds an invalid record`);
        }
        records.push({
            id: r['id'],
            name: r['name'],
            credentialHash: r['credentialHash'],
            createdAt: r['createdAt'],
            lastSeenAt: r['lastSeenAt'],
        });
    }
    return records;
}
//# sourceMappingURL=store.js.map