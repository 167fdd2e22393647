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

export interface TunnelRecord {
  /** Stable id (UUID), kept across restarts; logs and the API name tunnels by it. */
  readonly id: string;
  /** The DNS label: the tunnel serves `<name>.<domain>`. */
  readonly name: string;
  /** `sha256:<hex>` of the credential; the credential itself is never stored. */
  readonly credentialHash: string;
  /** ISO 8601. */
  readonly createdAt: string;
  /** ISO 8601: last time a connection of this tunnel registered or left; null = never. */
  readonly lastSeenAt: string | null;
  /**
   * Who created it, for the per-client quota: `token:<hash prefix>` or `ip:<address>`;
   * absent for records made by an admin or before quotas existed (they count for nobody).
   */
  readonly owner?: string;
  /** Store-and-forward (relay/queue/): keep requests while offline. Absent = off. */
  readonly queue?: TunnelQueueSetting;
}

/** A named tunnel's store-and-forward setting, kept in its reservation. */
export interface TunnelQueueSetting {
  readonly enabled: boolean;
}

export interface TunnelStore {
  get(name: string): Promise<TunnelRecord | undefined>;
  /** Adds a record; rejects with QT_ERR_NAME_TAKEN if the name exists. Resolves once durable. */
  create(record: TunnelRecord): Promise<void>;
  /** Removes a record; false if there was none. Resolves once durable. */
  delete(name: string): Promise<boolean>;
  list(): Promise<TunnelRecord[]>;
  /**
   * Sets lastSeenAt (no-op for an unknown name). Called on every connect and disconnect:
   * its cost must not grow with the number of records (a backend may batch it; the
   * value only has to be durable after close()).
   */
  touch(name: string, at: Date): Promise<void>;
  /**
   * Sets the store-and-forward setting; resolves with the new record (undefined for an
   * unknown name) once durable. Optional: a backend without it cannot toggle queues.
   */
  setQueue?(name: string, queue: TunnelQueueSetting): Promise<TunnelRecord | undefined>;
  /** How many records `owner` holds (the per-client quota). */
  countOwned(owner: string): Promise<number>;
  /** Waits for pending writes. */
  close(): Promise<void>;
}

export class NameTakenError extends QuickTunnelError {
  constructor(name: string) {
    super('QT_ERR_NAME_TAKEN', `the name '${name}' is already taken on this relay`);
  }
}

export class StoreError extends QuickTunnelError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('QT_ERR_STORE', message, options);
  }
}

/** Records in memory only: for a relay without a data dir (the embedded local relay). */
export class MemoryTunnelStore implements TunnelStore {
  protected readonly records = new Map<string, TunnelRecord>();
  private readonly owned = new Map<string, number>();

  constructor(records: Iterable<TunnelRecord> = []) {
    for (const r of records) this.add(r);
  }

  private add(record: TunnelRecord): void {
    this.records.set(record.name, record);
    if (record.owner !== undefined) {
      this.owned.set(record.owner, (this.owned.get(record.owner) ?? 0) + 1);
    }
  }

  private remove(record: TunnelRecord): void {
    this.records.delete(record.name);
    if (record.owner !== undefined) {
      const n = (this.owned.get(record.owner) ?? 1) - 1;
      if (n <= 0) this.owned.delete(record.owner);
      else this.owned.set(record.owner, n);
    }
  }

  async countOwned(owner: string): Promise<number> {
    return this.owned.get(owner) ?? 0;
  }

  async get(name: string): Promise<TunnelRecord | undefined> {
    return this.records.get(name);
  }

  async create(record: TunnelRecord): Promise<void> {
    if (this.records.has(record.name)) throw new NameTakenError(record.name);
    this.add(record);
    try {
      await this.persist();
    } catch (err) {
      if (this.records.get(record.name) === record) this.remove(record);
      throw err;
    }
  }

  async delete(name: string): Promise<boolean> {
    const record = this.records.get(name);
    if (record === undefined) return false;
    this.remove(record);
    try {
      await this.persist();
    } catch (err) {
      if (!this.records.has(name)) this.add(record);
      throw err;
    }
    return true;
  }

  async list(): Promise<TunnelRecord[]> {
    return [...this.records.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  async touch(name: string, at: Date): Promise<void> {
    const record = this.records.get(name);
    if (record === undefined) return;
    this.records.set(name, { ...record, lastSeenAt: at.toISOString() });
    this.seenChanged();
  }

  async setQueue(name: string, queue: TunnelQueueSetting): Promise<TunnelRecord | undefined> {
    const record = this.records.get(name);
    if (record === undefined) return undefined;
    const next = { ...record, queue: { enabled: queue.enabled } };
    this.records.set(name, next);
    try {
      await this.persist();
    } catch (err) {
      if (this.records.get(name) === next) this.records.set(name, record);
      throw err;
    }
    return next;
  }
  /** A last-seen time changed: nothing to do in memory (see JsonFileTunnelStore). */
  protected seenChanged(): void {}

  async close(): Promise<void> {}

  /** Makes the current records durable; nothing to do in memory. */
  protected async persist(): Promise<void> {}
}

/** Name of the store file in the data dir. */
export const STORE_FILE = 'tunnels.json';
const STORE_VERSION = 1;

interface StoreFile {
  version: number;
  tunnels: TunnelRecord[];
}

/**
 * Records in `<dataDir>/tunnels.json`. Writes are serialised and coalesced: mutations
 * made while a write is running are saved together by the next one, and every caller
 * resolves once a write that includes its change is on disk.
 */
export interface JsonFileStoreOptions {
  /**
   * Last-seen times (every connect and disconnect) are saved in batches, at most this
   * often, rather than rewriting the file on each. Default 10 s; close() saves the rest.
   */
  seenFlushMs?: number;
}

export class JsonFileTunnelStore extends MemoryTunnelStore {
  readonly file: string;
  private readonly dir: string;
  private chain: Promise<void> = Promise.resolve();
  private queued: Promise<void> | undefined;
  private tmpCounter = 0;
  private readonly seenFlushMs: number;
  private seenTimer: NodeJS.Timeout | undefined;

  private constructor(dir: string, records: TunnelRecord[], options: JsonFileStoreOptions) {
    super(records);
    this.dir = dir;
    this.file = path.join(dir, STORE_FILE);
    this.seenFlushMs = options.seenFlushMs ?? 10_000;
  }

  protected override seenChanged(): void {
    if (this.seenTimer !== undefined) return;
    this.seenTimer = setTimeout(() => {
      this.seenTimer = undefined;
      // A failed batch is retried with the next one (or at close); say so meanwhile.
      this.persist().catch(() => {});
    }, this.seenFlushMs);
    this.seenTimer.unref();
  }

  /**
   * Loads the store from `dataDir` (a missing file is an empty store). Temp files left
   * by a write that crashed are removed: the rename never happened, so the store file
   * still holds the previous complete state.
   */
  static async open(
    dataDir: string,
    options: JsonFileStoreOptions = {},
  ): Promise<JsonFileTunnelStore> {
    await mkdir(dataDir, { recursive: true, mode: 0o700 });
    const file = path.join(dataDir, STORE_FILE);
    let records: TunnelRecord[] = [];
    let text: string | undefined;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new StoreError(`cannot read the tunnel store ${file}: ${(err as Error).message}`, {
          cause: err,
        });
      }
    }
    if (text !== undefined) records = parseStoreFile(text, file);
    for (const entry of await readdir(dataDir)) {
      if (entry.startsWith(`${STORE_FILE}.`) && entry.endsWith('.tmp')) {
        await rm(path.join(dataDir, entry), { force: true });
      }
    }
    return new JsonFileTunnelStore(dataDir, records, options);
  }

  override async close(): Promise<void> {
    if (this.seenTimer !== undefined) {
      clearTimeout(this.seenTimer);
      this.seenTimer = undefined;
      await this.persist().catch(() => {});
    }
    await this.chain;
  }

  protected override persist(): Promise<void> {
    // One write queued at most: it snapshots the records when it starts, so it also
    // carries every change made while the previous write was running.
    this.queued ??= this.chain.then(() => {
      this.queued = undefined;
      return this.writeNow();
    });
    const queued = this.queued;
    this.chain = queued.catch(() => {});
    return queued;
  }

  private async writeNow(): Promise<void> {
    const body: StoreFile = { version: STORE_VERSION, tunnels: [...this.records.values()] };
    const data = `${JSON.stringify(body, null, 2)}\n`;
    const tmp = `${this.file}.${process.pid}.${++this.tmpCounter}.tmp`;
    try {
      const fh = await open(tmp, 'w', 0o600);
      try {
        await fh.writeFile(data, 'utf8');
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, this.file);
    } catch (err) {
      await rm(tmp, { force: true }).catch(() => {});
      throw new StoreError(
        `cannot write the tunnel store ${this.file}: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
    // Make the rename itself durable. Some platforms can't open a directory for
    // fsync (Windows): the file data is synced already, so that is best effort.
    try {
      const dh = await open(this.dir, 'r');
      try {
        await dh.sync();
      } finally {
        await dh.close();
      }
    } catch {
      // best effort, see above
    }
  }
}

function parseStoreFile(text: string, file: string): TunnelRecord[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new StoreError(
      `the tunnel store ${file} is not valid JSON (${(err as Error).message}); restore it from a backup or move it away to start empty`,
      { cause: err },
    );
  }
  const v = (typeof parsed === 'object' && parsed !== null ? parsed : {}) as Record<
    string,
    unknown
  >;
  if (typeof v['version'] === 'number' && v['version'] > STORE_VERSION) {
    throw new StoreError(
      `the tunnel store ${file} was written by a newer relay (format ${v['version']}); upgrade quick-tunnel`,
    );
  }
  if (v['version'] !== STORE_VERSION || !Array.isArray(v['tunnels'])) {
    throw new StoreError(`the tunnel store ${file} is not a quick-tunnel store file`);
  }
  const records: TunnelRecord[] = [];
  for (const item of v['tunnels'] as unknown[]) {
    const r = (typeof item === 'object' && item !== null ? item : {}) as Record<string, unknown>;
    const str = (k: string): boolean => typeof r[k] === 'string' && r[k] !== '';
    if (
      !str('id') ||
      !str('name') ||
      !str('credentialHash') ||
      !str('createdAt') ||
      !(r['lastSeenAt'] === null || typeof r['lastSeenAt'] === 'string')
    ) {
      throw new StoreError(`the tunnel store ${file} holds an invalid record`);
    }
    const queue = r['queue'] as Record<string, unknown> | undefined;
    records.push({
      id: r['id'] as string,
      name: r['name'] as string,
      credentialHash: r['credentialHash'] as string,
      createdAt: r['createdAt'] as string,
      lastSeenAt: r['lastSeenAt'] as string | null,
      ...(typeof queue === 'object' && queue !== null && typeof queue['enabled'] === 'boolean'
        ? { queue: { enabled: queue['enabled'] } }
        : {}),
      ...(typeof r['owner'] === 'string' ? { owner: r['owner'] } : {}),
    });
  }
  return records;
}
