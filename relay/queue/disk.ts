/**
 * The durable part of store-and-forward: the requests a named tunnel's relay keeps
 * while no client of that tunnel is connected, on disk under `<dataDir>/queue/<tunnel
 * id>/`.
 *
 * One file per item, `<seq>.qti`, written whole to a temp name, fsync'd, renamed into
 * place and the directory fsync'd: a crash or a full disk at any point leaves either
 * no item or a complete one, never a torn file (temp files are removed at start). An
 * item that failed for good gets a `<seq>.fail` sidecar (written the same way) saying
 * why; delivering an item unlinks it (and fsyncs the directory) before the next one is
 * sent, so after a kill -9 only the item that was in flight is sent again, with the
 * same delivery id.
 *
 * Item file: `QTQ1`, a 4-byte big-endian length, that many bytes of JSON metadata
 * (method, target, headers, delivery id, arrival time, body length and SHA-256), then
 * the body bytes exactly as the sender sent them.
 */
import { createHash, randomUUID } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { QuickTunnelError, errnoCode } from '../../shared/errors.js';
import type { HeaderPairs } from '../../shared/protocol/tunnel.js';
import { syncDir, TMP_EXT, writeDurably } from './durable.js';

/** What is kept of a request: enough to replay it byte for byte. */
export interface QueuedRequestHead {
  method: string;
  /** Origin-form target, exactly as the sender sent it. */
  url: string;
  httpVersion: string;
  /** End-to-end headers as the CLI would have received them live (X-Forwarded-* included). */
  headers: HeaderPairs;
  remoteAddress: string;
  scheme: 'http' | 'https';
}

export interface QueuedItemMeta extends QueuedRequestHead {
  /** Delivery id: sent as X-Quick-Tunnel-Delivery-Id, the same on every attempt. */
  id: string;
  /** Arrival order within the tunnel's queue. */
  seq: number;
  /** ISO 8601 arrival time: sent as X-Quick-Tunnel-Queued-At. */
  queuedAt: string;
  bodyBytes: number;
  bodySha256: string;
}

/** Why an item is no longer being delivered. */
export interface FailedInfo {
  /** `expired` (older than the age limit) or `attempts` (every delivery attempt failed). */
  reason: 'expired' | 'attempts';
  message: string;
  attempts: number;
  failedAt: string;
  /** Status of the last attempt, when the client answered at all. */
  lastStatus?: number;
}

export interface QueueItem {
  readonly meta: QueuedItemMeta;
  /** Bytes the item takes on disk (file and sidecar). */
  sizeBytes: number;
  failed: FailedInfo | undefined;
  /** Failed delivery attempts so far (kept in a `<seq>.try` sidecar across restarts). */
  attempts: number;
}

/** Storage refused an item: the disk cap is reached or the disk itself is full. */
export class QueueStorageFullError extends QuickTunnelError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('QT_ERR_QUEUE_STORAGE_FULL', message, { ...options, retryable: true });
  }
}

export class QueueStorageError extends QuickTunnelError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('QT_ERR_QUEUE_STORAGE', message, options);
  }
}

const MAGIC = Buffer.from('QTQ1');
const ITEM_EXT = '.qti';
const FAIL_EXT = '.fail';
const TRY_EXT = '.try';
export const QUEUE_DIR = 'queue';

function isDiskFull(err: unknown): boolean {
  const code = errnoCode(err);
  return code === 'ENOSPC' || code === 'EDQUOT' || code === 'EFBIG';
}

function seqName(seq: number): string {
  return String(seq).padStart(16, '0');
}

/** Encodes an item file. */
export function encodeItem(meta: QueuedItemMeta, body: Buffer): Buffer {
  const json = Buffer.from(JSON.stringify(meta), 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32BE(json.length);
  return Buffer.concat([MAGIC, len, json, body]);
}

/** Decodes and verifies an item file; throws on anything but a complete, intact item. */
export function decodeItem(data: Buffer): { meta: QueuedItemMeta; body: Buffer } {
  if (data.length < 8 || !data.subarray(0, 4).equals(MAGIC)) throw new Error('not a queue item');
  const len = data.readUInt32BE(4);
  if (8 + len > data.length) throw new Error('truncated metadata');
  const meta = JSON.parse(data.subarray(8, 8 + len).toString('utf8')) as QueuedItemMeta;
  const body = data.subarray(8 + len);
  if (
    typeof meta.id !== 'string' ||
    typeof meta.method !== 'string' ||
    typeof meta.url !== 'string' ||
    !Array.isArray(meta.headers) ||
    body.length !== meta.bodyBytes ||
    createHash('sha256').update(body).digest('hex') !== meta.bodySha256
  ) {
    throw new Error('metadata or body does not check out');
  }
  return { meta, body };
}

/** One tunnel's queue directory: its items in arrival order. */
export class TunnelQueueDir {
  readonly tunnelId: string;
  readonly dir: string;
  /** Items in arrival (seq) order, waiting and failed alike. */
  readonly items: QueueItem[] = [];
  private nextSeq = 1;
  private readonly disk: QueueDisk;

  constructor(disk: QueueDisk, tunnelId: string, dir: string) {
    this.disk = disk;
    this.tunnelId = tunnelId;
    this.dir = dir;
  }

  get waiting(): number {
    let n = 0;
    for (const item of this.items) if (item.failed === undefined) n++;
    return n;
  }

  get failedCount(): number {
    return this.items.length - this.waiting;
  }

  /** The oldest item still to deliver. */
  nextWaiting(): QueueItem | undefined {
    return this.items.find((i) => i.failed === undefined);
  }

  /** Loads the directory: complete items only; temp files and broken items are removed. */
  async load(log: (msg: string) => void): Promise<void> {
    const names = await readdir(this.dir);
    const fails = new Set(names.filter((n) => n.endsWith(FAIL_EXT)));
    for (const name of names.sort()) {
      const file = path.join(this.dir, name);
      if (name.endsWith(TMP_EXT)) {
        await rm(file, { force: true });
        continue;
      }
      if (!name.endsWith(ITEM_EXT)) continue;
      // Never reuse a number, not even a damaged item's (its file is kept aside).
      const named = Number.parseInt(name, 10);
      if (Number.isSafeInteger(named)) this.nextSeq = Math.max(this.nextSeq, named + 1);
      let decoded;
      const data = await readFile(file);
      try {
        decoded = decodeItem(data);
      } catch (err) {
        // Only a disk or a hand edit breaks a renamed file: keep it aside, don't deliver it.
        log(`queue item ${file} is unreadable (${(err as Error).message}): moved aside`);
        await rename(file, `${file}.broken`).catch(() => {});
        continue;
      }
      const item: QueueItem = {
        meta: decoded.meta,
        sizeBytes: data.length,
        failed: undefined,
        attempts: 0,
      };
      if (names.includes(`${seqName(decoded.meta.seq)}${TRY_EXT}`)) {
        const text = await readFile(
          path.join(this.dir, `${seqName(decoded.meta.seq)}${TRY_EXT}`),
          'utf8',
        ).catch(() => '0');
        const n = Number.parseInt(text, 10);
        if (Number.isSafeInteger(n) && n > 0) item.attempts = n;
      }
      const failName = `${seqName(decoded.meta.seq)}${FAIL_EXT}`;
      if (fails.has(failName)) {
        fails.delete(failName);
        try {
          const text = await readFile(path.join(this.dir, failName));
          item.failed = JSON.parse(text.toString('utf8')) as FailedInfo;
          item.sizeBytes += text.length;
        } catch {
          // An unreadable sidecar: the item is simply still waiting.
        }
      }
      this.items.push(item);
      this.nextSeq = Math.max(this.nextSeq, decoded.meta.seq + 1);
    }
    // Sidecars whose item is gone (deleted between the unlinks of a delivery or purge).
    for (const orphan of fails) await rm(path.join(this.dir, orphan), { force: true });
    const live = new Set(this.items.map((i) => `${seqName(i.meta.seq)}${TRY_EXT}`));
    for (const name of names) {
      if (name.endsWith(TRY_EXT) && !live.has(name))
        await rm(path.join(this.dir, name), { force: true });
    }
    this.items.sort((a, b) => a.meta.seq - b.meta.seq);
  }

  /**
   * Persists one request. Resolves once it is durable; rejects with
   * QueueStorageFullError when the relay's disk cap or the disk itself is full (nothing
   * is left behind then).
   */
  async append(head: QueuedRequestHead, body: Buffer, now: Date): Promise<QueueItem> {
    const seq = this.nextSeq++;
    const meta: QueuedItemMeta = {
      ...head,
      id: randomUUID(),
      seq,
      queuedAt: now.toISOString(),
      bodyBytes: body.length,
      bodySha256: createHash('sha256').update(body).digest('hex'),
    };
    const data = encodeItem(meta, body);
    this.disk.reserve(data.length);
    try {
      await mkdir(this.dir, { recursive: true, mode: 0o700 });
      await writeDurably(this.dir, path.join(this.dir, `${seqName(seq)}${ITEM_EXT}`), data);
    } catch (err) {
      this.disk.release(data.length);
      if (isDiskFull(err)) {
        throw new QueueStorageFullError(`the disk is full (${(err as Error).message})`, {
          cause: err,
        });
      }
      throw new QueueStorageError(`cannot write a queue item: ${(err as Error).message}`, {
        cause: err,
      });
    }
    const item: QueueItem = { meta, sizeBytes: data.length, failed: undefined, attempts: 0 };
    this.items.push(item);
    return item;
  }

  /** The stored body of `item`, verified. */
  async readBody(item: QueueItem): Promise<Buffer> {
    const data = await readFile(path.join(this.dir, `${seqName(item.meta.seq)}${ITEM_EXT}`));
    return decodeItem(data).body;
  }

  /** Forgets a delivered (or purged) item; durable before it resolves. */
  async remove(item: QueueItem): Promise<void> {
    const i = this.items.indexOf(item);
    if (i === -1) return; // already gone (purged while it was being delivered)
    this.items.splice(i, 1);
    const base = path.join(this.dir, seqName(item.meta.seq));
    await unlink(`${base}${ITEM_EXT}`).catch((err: unknown) => {
      if (errnoCode(err) !== 'ENOENT') throw err;
    });
    if (item.failed !== undefined) await rm(`${base}${FAIL_EXT}`, { force: true });
    if (item.attempts > 0) await rm(`${base}${TRY_EXT}`, { force: true });
    await syncDir(this.dir);
    this.disk.release(item.sizeBytes);
  }

  /**
   * Records one more failed attempt, durably (so the limit holds across restarts). A
   * write that fails (disk full) only costs the count: the item is retried as before.
   */
  async noteAttempt(item: QueueItem): Promise<number> {
    item.attempts++;
    const file = path.join(this.dir, `${seqName(item.meta.seq)}${TRY_EXT}`);
    await writeDurably(this.dir, file, Buffer.from(String(item.attempts))).catch(() => {});
    return item.attempts;
  }

  /** Marks `item` as failed for good (kept, visible and purgeable). */
  async markFailed(item: QueueItem, info: FailedInfo): Promise<void> {
    const data = Buffer.from(JSON.stringify(info), 'utf8');
    const file = path.join(this.dir, `${seqName(item.meta.seq)}${FAIL_EXT}`);
    try {
      await writeDurably(this.dir, file, data);
      this.disk.reserve(data.length, true);
      item.sizeBytes += data.length;
    } catch {
      // Disk full: the item stays failed in memory and is simply retried after a restart.
    }
    item.failed = info;
  }

  /** Removes every item (and `which`: waiting, failed or all). Returns how many. */
  async purge(which: 'all' | 'failed' | 'waiting' = 'all'): Promise<number> {
    const victims = this.items.filter(
      (i) => which === 'all' || (which === 'failed') === (i.failed !== undefined),
    );
    for (const item of victims) await this.remove(item);
    return victims.length;
  }
}

/**
 * Every tunnel's queue directory under `<dataDir>/queue`, and the bytes they take
 * (relay-wide, against `--queue-disk-cap`).
 */
export class QueueDisk {
  readonly root: string;
  readonly capBytes: number;
  private usedBytes = 0;
  private readonly dirs = new Map<string, TunnelQueueDir>();

  private constructor(root: string, capBytes: number) {
    this.root = root;
    this.capBytes = capBytes;
  }

  /** Opens (and loads) `<dataDir>/queue`. */
  static async open(
    dataDir: string,
    capBytes: number,
    log: (msg: string) => void,
  ): Promise<QueueDisk> {
    const disk = new QueueDisk(path.join(dataDir, QUEUE_DIR), capBytes);
    await mkdir(disk.root, { recursive: true, mode: 0o700 });
    for (const entry of await readdir(disk.root)) {
      const dir = path.join(disk.root, entry);
      if (!/^[0-9a-f-]{36}$/.test(entry) || !(await stat(dir)).isDirectory()) continue;
      const q = new TunnelQueueDir(disk, entry, dir);
      await q.load(log);
      for (const item of q.items) disk.usedBytes += item.sizeBytes;
      disk.dirs.set(entry, q);
    }
    return disk;
  }

  get used(): number {
    return this.usedBytes;
  }

  /** Tunnel ids with a queue directory. */
  ids(): string[] {
    return [...this.dirs.keys()];
  }

  /** The queue of `tunnelId`, created (in memory) on first use. */
  for(tunnelId: string): TunnelQueueDir {
    let q = this.dirs.get(tunnelId);
    if (q === undefined) {
      q = new TunnelQueueDir(this, tunnelId, path.join(this.root, tunnelId));
      this.dirs.set(tunnelId, q);
    }
    return q;
  }

  peek(tunnelId: string): TunnelQueueDir | undefined {
    return this.dirs.get(tunnelId);
  }

  /** Removes a tunnel's whole queue (the tunnel was deleted). */
  async drop(tunnelId: string): Promise<void> {
    const q = this.dirs.get(tunnelId);
    this.dirs.delete(tunnelId);
    if (q !== undefined) {
      for (const item of q.items) this.usedBytes -= item.sizeBytes;
      q.items.length = 0; // a delivery still running finds its item gone and frees nothing
    }
    await rm(path.join(this.root, tunnelId), { recursive: true, force: true });
    await syncDir(this.root);
  }

  /** Counts `bytes` against the cap; throws QueueStorageFullError past it (unless `force`). */
  reserve(bytes: number, force = false): void {
    if (!force && this.usedBytes + bytes > this.capBytes) {
      throw new QueueStorageFullError(
        `the relay's queue storage is full (${this.usedBytes} of ${this.capBytes} bytes used)`,
      );
    }
    this.usedBytes += bytes;
  }

  release(bytes: number): void {
    this.usedBytes = Math.max(0, this.usedBytes - bytes);
  }
}
