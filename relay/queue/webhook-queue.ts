/**
 * Store-and-forward for named tunnels that opted in (`tunnel create NAME --queue`).
 *
 * While no client of such a tunnel is connected (after the reconnect hold), a request
 * with a body-carrying method (POST, PUT, PATCH, DELETE) that passes the tunnel's
 * access rules and fits the limits is kept on disk (see disk.ts) and answered `202
 * Accepted` with a delivery id. Anything else gets the usual 503, with a page that
 * names the reason when a limit was the reason.
 *
 * When a client of the tunnel connects, its queue is delivered alongside live traffic
 * (live requests are not held back), one item at a time in arrival order, each with
 * its original method, target, headers and body plus `X-Quick-Tunnel-Delivery-Id` and
 * `X-Quick-Tunnel-Queued-At`. A 5xx, a reset or no answer is retried with exponential
 * backoff, then the item is kept as failed. At-least-once: the only item a crash can
 * deliver twice is the one in flight, with the same delivery id.
 *
 * Over 500 lines on purpose: one class whose intake (offer), delivery loop and views
 * share per-tunnel state (pending writes, running loops, sleepers, access rules); what
 * stands alone is in disk.ts (storage), delivery.ts (one attempt), pages.ts, responders.ts.
 */
import type { IncomingMessage } from 'node:http';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { errnoCode } from '../../shared/errors.js';
import type { MuxSession } from '../../shared/mux/session.js';
import { RELAY_DEFAULTS } from '../config.js';
import { checkAccess, compileAccess, type CompiledAccess } from '../edge/access.js';
import { pages, type ErrorPage } from '../edge/pages.js';
import { buildRequestHead } from '../edge/proxy.js';
import type { NamedTunnels } from '../tunnels/named.js';
import type { Tunnel, TunnelRegistry } from '../tunnels/registry.js';
import type { TunnelRecord } from '../tunnels/store.js';
import { QueueDisk, QueueStorageFullError, type QueueItem, type TunnelQueueDir } from './disk.js';
import { writeDurably } from './durable.js';
import { deliverOnce, readBody } from './delivery.js';
import { queuePages } from './pages.js';
import type { QueueResponder } from './responders.js';

/** Methods that are kept while offline; everything else gets the offline 503. */
export const QUEUED_METHODS: ReadonlySet<string> = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

export interface QueueLimits {
  /** Largest body kept, in bytes. Default 1 MiB. */
  maxBodyBytes: number;
  /** Most requests kept per tunnel (waiting and failed). Default 1,000. */
  maxItems: number;
  /** Requests older than this are not delivered (kept as failed, reason `expired`). Default 72 h. */
  maxAgeMs: number;
  /** Bytes all queues may take on disk, relay-wide. Default 1 GiB. */
  diskCapBytes: number;
  /** Delivery attempts before an item is kept as failed. Default 8. */
  maxAttempts: number;
  /** First retry delay; doubles per attempt up to `retryMaxMs`. Default 1 s. */
  retryBaseMs: number;
  retryMaxMs: number;
  /** How long a delivery waits for the response head. Default 60 s. */
  deliveryTimeoutMs: number;
  /** Status the sender gets for a kept request. Default 202. */
  acceptStatus: number;
  /** Request bodies being read at once into memory, relay-wide. Default 64 MiB. */
  maxBufferedBytes: number;
}

/** Defaults: relay/config.ts (RELAY_DEFAULTS.queue). */
export const DEFAULT_QUEUE_LIMITS: Readonly<QueueLimits> = RELAY_DEFAULTS.queue;

/** One item as `GET /api/tunnels/:name/queue` lists it. */
export interface QueueItemView {
  deliveryId: string;
  seq: number;
  method: string;
  path: string;
  queuedAt: string;
  bodyBytes: number;
  state: 'waiting' | 'delivering' | 'failed';
  attempts: number;
  lastError?: string;
  failed?: { reason: string; message: string; failedAt: string; lastStatus?: number };
}

export interface QueueView {
  name: string;
  enabled: boolean;
  connected: boolean;
  waiting: number;
  failed: number;
  limits: { maxBodyBytes: number; maxItems: number; maxAgeSeconds: number };
  items: QueueItemView[];
}

const ACCESS_FILE = 'access.json';

export interface WebhookQueueOptions {
  dataDir: string;
  limits?: Partial<QueueLimits>;
  registry: TunnelRegistry;
  named: NamedTunnels;
  log: Logger;
  /** The relay's per-tunnel rate limit, applied to kept requests as to live ones. */
  rateLimit?: ((label: string, hostname: string) => ErrorPage | undefined) | undefined;
  now?: () => number;
  /**
   * Cluster mode: the tunnel's connection on another relay, as visitors' requests are
   * forwarded there (the peer link), or undefined when no other relay holds it. With it,
   * queues whose tunnel has no local client are checked every `remoteCheckMs` and
   * delivered through that relay.
   */
  remote?: ((label: string) => Promise<RemoteDelivery | undefined>) | undefined;
  /** How often queues with waiting items and no local client look for a remote one. Default 1.5 s. */
  remoteCheckMs?: number;
}

/** A connection of the tunnel held by another relay of the cluster. */
export interface RemoteDelivery {
  session: MuxSession;
  /** Marks the request head as forwarded (the other relay hands it to its client). */
  wrapHead: (head: Record<string, unknown>) => Record<string, unknown>;
}

export class WebhookQueue {
  readonly limits: QueueLimits;
  private readonly disk: QueueDisk;
  private readonly opts: WebhookQueueOptions;
  private readonly now: () => number;
  /** Last access rules of each tunnel (by id), enforced while it is offline. */
  private readonly access = new Map<string, { json: string; compiled: CompiledAccess }>();
  /** Items being written per tunnel id (counted against maxItems before they land). */
  private readonly pending = new Map<string, number>();
  private buffered = 0;
  /** Tunnel ids whose delivery loop runs. */
  private readonly delivering = new Map<string, QueueItem | undefined>();
  /** Last failure of each item being retried (the count itself is on the item, on disk). */
  private readonly lastErrors = new Map<string, string>();
  private readonly sleepers = new Set<{ timer: NodeJS.Timeout; wake: () => void }>();
  private closed = false;
  private readonly loops = new Set<Promise<void>>();
  /** Tunnel names by id, for the remote check (known from the store and from offers). */
  private readonly labels = new Map<string, string>();
  private remoteTimer: NodeJS.Timeout | undefined;

  private constructor(opts: WebhookQueueOptions, disk: QueueDisk, limits: QueueLimits) {
    this.opts = opts;
    this.disk = disk;
    this.limits = limits;
    this.now = opts.now ?? Date.now;
    if (opts.remote !== undefined) {
      this.remoteTimer = setInterval(() => this.checkRemote(), opts.remoteCheckMs ?? 1500);
      this.remoteTimer.unref();
    }
  }

  static async open(opts: WebhookQueueOptions): Promise<WebhookQueue> {
    const limits = { ...DEFAULT_QUEUE_LIMITS, ...opts.limits };
    const disk = await QueueDisk.open(opts.dataDir, limits.diskCapBytes, (msg) =>
      opts.log.warn({ event: 'queue-item-broken' }, msg),
    );
    const queue = new WebhookQueue(opts, disk, limits);
    for (const id of disk.ids()) {
      const file = path.join(disk.root, id, ACCESS_FILE);
      try {
        const json = await readFile(file, 'utf8');
        queue.access.set(id, { json, compiled: compileAccess(JSON.parse(json) as unknown) });
      } catch (err) {
        if (errnoCode(err) !== 'ENOENT') {
          // Unreadable rules must not open the tunnel up: refuse everyone until it connects.
          opts.log.warn(
            { event: 'queue-access-unreadable', file },
            'queue access rules unreadable',
          );
          queue.access.set(id, { json: '', compiled: REFUSE_ALL });
        }
      }
    }
    // Queues of tunnels that no longer exist (deleted while this relay was down).
    const records = await opts.named.store.list();
    const known = new Set(records.map((r) => r.id));
    for (const id of disk.ids()) if (!known.has(id)) await disk.drop(id);
    for (const r of records) queue.labels.set(r.id, r.name);
    let waiting = 0;
    for (const id of disk.ids()) waiting += disk.peek(id)?.waiting ?? 0;
    opts.log.info(
      { event: 'queue-loaded', tunnels: disk.ids().length, waiting, bytes: disk.used },
      'webhook queue loaded',
    );
    return queue;
  }

  /** Requests kept, relay-wide, by state. */
  totals(): { waiting: number; failed: number } {
    let waiting = 0;
    let failed = 0;
    for (const id of this.disk.ids()) {
      const q = this.disk.peek(id);
      waiting += q?.waiting ?? 0;
      failed += q?.failedCount ?? 0;
    }
    return { waiting, failed };
  }

  /** Bytes the queues take on disk. */
  get usedBytes(): number {
    return this.disk.used;
  }

  /**
   * A client of `tunnel` registered: remember its access rules (they apply to what is
   * kept while it is offline) and start delivering its queue.
   */
  connected(tunnel: Tunnel): void {
    if (tunnel.kind !== 'named' || this.closed) return;
    const json = JSON.stringify(tunnel.access?.policy ?? {});
    if (this.access.get(tunnel.id)?.json !== json) {
      this.access.set(tunnel.id, {
        json,
        compiled: tunnel.access ?? { basicAuth: undefined, allow: undefined },
      });
      void this.saveAccess(tunnel.label, tunnel.id, json);
    }
    this.kick(tunnel.id, tunnel.label);
  }

  /** Whether `record` keeps requests while offline. */
  static enabled(record: TunnelRecord | undefined): boolean {
    return record?.queue?.enabled === true;
  }

  /**
   * Offers a request for `label`, which has no connected client. Resolves false when the
   * tunnel did not opt in: the caller answers with its own page. Otherwise the request
   * has been answered: 202 when kept, else 503 (GET/HEAD: the usual offline page; over a
   * limit: a page naming it).
   */
  async offer(
    req: IncomingMessage,
    res: QueueResponder,
    label: string,
    hostname: string,
    scheme: 'http' | 'https',
  ): Promise<boolean> {
    if (this.closed) return false;
    const record = await this.opts.named.get(label);
    if (record === undefined || !WebhookQueue.enabled(record)) return false;
    if (!QUEUED_METHODS.has((req.method ?? '').toUpperCase())) {
      // GET, HEAD…: not kept. The tunnel is known to exist, so: offline, 503.
      res.page(pages.tunnelOffline(hostname));
      return true;
    }
    const id = record.id;
    this.labels.set(id, label);
    const access = this.access.get(id)?.compiled;
    if (access !== undefined) {
      const refused = checkAccess(req, access, hostname);
      if (refused !== undefined) {
        res.page(refused);
        return true;
      }
    }
    const limited = this.opts.rateLimit?.(label, hostname);
    if (limited !== undefined) {
      res.page(limited);
      return true;
    }
    const q = this.disk.for(id);
    await this.expire(q, label);
    const pending = this.pending.get(id) ?? 0;
    if (q.items.length + pending >= this.limits.maxItems) {
      this.refuse(res, queuePages.queueFull(hostname, q.items.length, q.failedCount), {
        name: label,
        reason: 'queue-full',
      });
      return true;
    }
    const declared = Number(req.headers['content-length'] ?? 0);
    if (Number.isFinite(declared) && declared > this.limits.maxBodyBytes) {
      this.refuse(res, queuePages.tooLarge(hostname, this.limits.maxBodyBytes), {
        name: label,
        reason: 'too-large',
      });
      return true;
    }
    const budget = Number.isFinite(declared) && declared > 0 ? declared : 64 * 1024;
    if (this.buffered + budget > this.limits.maxBufferedBytes) {
      this.refuse(res, queuePages.busy(hostname), { name: label, reason: 'busy' });
      return true;
    }
    this.pending.set(id, pending + 1);
    this.buffered += budget;
    try {
      let body: Buffer | undefined;
      try {
        body = await readBody(res.body, this.limits.maxBodyBytes);
      } catch {
        res.abort(); // the sender went away mid-body: nothing is kept
        return true;
      }
      if (body === undefined) {
        this.refuse(res, queuePages.tooLarge(hostname, this.limits.maxBodyBytes), {
          name: label,
          reason: 'too-large',
        });
        return true;
      }
      const head = buildRequestHead(req, scheme, false, access?.basicAuth !== undefined);
      let item: QueueItem;
      try {
        item = await q.append(
          {
            method: head.method,
            url: head.url,
            httpVersion: head.httpVersion,
            headers: head.headers,
            remoteAddress: head.remoteAddress,
            scheme: head.scheme,
          },
          body,
          new Date(this.now()),
        );
      } catch (err) {
        const full = err instanceof QueueStorageFullError;
        this.opts.log.warn(
          {
            event: 'queue-refused',
            name: label,
            reason: full ? 'storage-full' : 'storage-error',
            err: (err as Error).message,
          },
          full ? 'queue storage full: request refused' : 'queue write failed: request refused',
        );
        res.page(full ? queuePages.storageFull(hostname) : pages.tunnelOffline(hostname));
        return true;
      }
      const body202 = JSON.stringify({
        queued: true,
        deliveryId: item.meta.id,
        queuedAt: item.meta.queuedAt,
        tunnel: hostname,
        message: `${hostname} is offline: this request is kept and will be delivered when it is back`,
      });
      res.accepted(
        this.limits.acceptStatus,
        {
          'content-type': 'application/json; charset=utf-8',
          'cache-control': 'no-store',
          'x-quick-tunnel-delivery-id': item.meta.id,
        },
        body202,
      );
      if (this.opts.log.isLevelEnabled('debug')) {
        this.opts.log.debug(
          { event: 'queued', name: label, deliveryId: item.meta.id, bytes: body.length },
          'request queued',
        );
      }
      // A client may have connected while this was being written.
      this.kick(id, label);
      return true;
    } finally {
      this.buffered -= budget;
      const left = (this.pending.get(id) ?? 1) - 1;
      if (left > 0) this.pending.set(id, left);
      else this.pending.delete(id);
    }
  }

  /** The queue of `record`, for `GET /api/tunnels/:name/queue` (expired items marked first). */
  async view(record: TunnelRecord): Promise<QueueView> {
    const dir = this.disk.peek(record.id);
    if (dir !== undefined) await this.expire(dir, record.name);
    const q = this.disk.peek(record.id);
    const inFlight = this.delivering.get(record.id);
    const items: QueueItemView[] = (q?.items ?? []).map((item) => {
      const lastError = this.lastErrors.get(item.meta.id);
      const v: QueueItemView = {
        deliveryId: item.meta.id,
        seq: item.meta.seq,
        method: item.meta.method,
        path: item.meta.url,
        queuedAt: item.meta.queuedAt,
        bodyBytes: item.meta.bodyBytes,
        state: item.failed !== undefined ? 'failed' : item === inFlight ? 'delivering' : 'waiting',
        attempts: item.failed?.attempts ?? item.attempts,
      };
      if (lastError !== undefined && item.failed === undefined) v.lastError = lastError;
      if (item.failed !== undefined) {
        v.failed = {
          reason: item.failed.reason,
          message: item.failed.message,
          failedAt: item.failed.failedAt,
          ...(item.failed.lastStatus !== undefined ? { lastStatus: item.failed.lastStatus } : {}),
        };
      }
      return v;
    });
    return {
      name: record.name,
      enabled: WebhookQueue.enabled(record),
      connected: this.opts.registry.lookup(record.name)?.pickSession() !== undefined,
      waiting: q?.waiting ?? 0,
      failed: q?.failedCount ?? 0,
      limits: {
        maxBodyBytes: this.limits.maxBodyBytes,
        maxItems: this.limits.maxItems,
        maxAgeSeconds: Math.round(this.limits.maxAgeMs / 1000),
      },
      items,
    };
  }

  /** Removes `which` items of `record`'s queue; returns how many. */
  async purge(record: TunnelRecord, which: 'all' | 'failed' | 'waiting'): Promise<number> {
    const q = this.disk.peek(record.id);
    if (q === undefined) return 0;
    const n = await q.purge(which);
    this.opts.log.info(
      { event: 'queue-purged', name: record.name, which, items: n },
      'queue purged',
    );
    return n;
  }

  /** The tunnel was deleted: its queue goes with it. */
  async drop(record: TunnelRecord): Promise<void> {
    this.access.delete(record.id);
    this.labels.delete(record.id);
    await this.disk.drop(record.id);
  }

  /** The tunnel turned its queue on: keep its current access rules from now on. */
  enabledNow(record: TunnelRecord): void {
    const tunnel = this.opts.registry.lookup(record.name);
    if (tunnel?.kind === 'named' && tunnel.id === record.id) {
      this.access.delete(record.id);
      this.connected(tunnel);
    }
  }

  /** Stops delivering (items in flight stay on disk and go out after the restart). */
  async close(): Promise<void> {
    this.closed = true;
    if (this.remoteTimer !== undefined) clearInterval(this.remoteTimer);
    for (const s of [...this.sleepers]) {
      clearTimeout(s.timer);
      s.wake();
    }
    await Promise.allSettled([...this.loops]);
  }

  private refuse(
    res: QueueResponder,
    page: ErrorPage,
    log: { name: string; reason: string },
  ): void {
    this.opts.log.info({ event: 'queue-refused', ...log }, `request not queued: ${page.title}`);
    res.page(page);
  }

  /** Items older than the age limit are not delivered: kept as failed (`expired`). */
  private async expire(q: TunnelQueueDir, name: string): Promise<void> {
    const oldest = this.now() - this.limits.maxAgeMs;
    for (const item of [...q.items]) {
      if (item.failed !== undefined) continue;
      if (Date.parse(item.meta.queuedAt) > oldest) break; // arrival order: the rest are newer
      if (this.delivering.get(q.tunnelId) === item) continue;
      await q.markFailed(item, {
        reason: 'expired',
        message: `not delivered within ${
          this.limits.maxAgeMs < 1000
            ? `${this.limits.maxAgeMs} ms`
            : `${Math.round(this.limits.maxAgeMs / 1000)} s`
        } of its arrival`,
        attempts: item.attempts,
        failedAt: new Date(this.now()).toISOString(),
      });
      this.lastErrors.delete(item.meta.id);
      this.opts.log.warn(
        { event: 'queue-expired', name, deliveryId: item.meta.id, queuedAt: item.meta.queuedAt },
        'queued request expired',
      );
    }
  }

  private async saveAccess(name: string, id: string, json: string): Promise<void> {
    try {
      const record = await this.opts.named.get(name);
      if (record === undefined || record.id !== id || !WebhookQueue.enabled(record)) return;
      const q = this.disk.for(id);
      await mkdir(q.dir, { recursive: true, mode: 0o700 });
      await writeDurably(q.dir, path.join(q.dir, ACCESS_FILE), Buffer.from(json));
    } catch (err) {
      this.opts.log.warn(
        { event: 'queue-access-unsaved', name, err: (err as Error).message },
        'could not save the access rules of a queued tunnel',
      );
    }
  }

  /**
   * Cluster mode, every `remoteCheckMs`: queues with waiting items whose loop is not
   * running (no local client) are delivered through another relay holding the tunnel.
   */
  private checkRemote(): void {
    for (const id of this.disk.ids()) {
      const label = this.labels.get(id);
      if (label !== undefined) this.kick(id, label, true);
    }
  }

  /**
   * Starts the delivery loop of tunnel `id` unless it runs already. Only with a local
   * client, unless `remote` (the periodic check): then the loop looks for one on
   * another relay too, and ends when there is none.
   */
  private kick(id: string, label: string, remote = false): void {
    if (this.closed || this.delivering.has(id)) return;
    if (this.disk.peek(id)?.nextWaiting() === undefined) return;
    if (!remote && this.opts.registry.lookup(label)?.pickSession() === undefined) return;
    this.delivering.set(id, undefined);
    const loop = this.deliverAll(id, label, remote).then(
      () => {},
      (err: unknown) =>
        this.opts.log.error(
          { event: 'queue-delivery-error', name: label, err: (err as Error).message },
          'queue delivery stopped on an error',
        ),
    );
    this.loops.add(loop);
    void loop.finally(() => {
      this.loops.delete(loop);
      this.delivering.delete(id);
      // Items that arrived just as the loop ended.
      if (!this.closed) setImmediate(() => this.kick(id, label));
    });
  }

  private async deliverAll(id: string, label: string, remote: boolean): Promise<void> {
    const hostname = this.opts.named.hostname(label);
    for (;;) {
      if (this.closed) return;
      const q = this.disk.peek(id);
      if (q === undefined) return;
      await this.expire(q, label);
      const item = q.nextWaiting();
      if (item === undefined) return;
      const tunnel = this.opts.registry.lookup(label);
      const local = tunnel?.id === id ? tunnel.pickSession() : undefined;
      const via = local === undefined && remote ? await this.remoteFor(id, label) : undefined;
      const session = local ?? via?.session;
      // Delivered when a client connects again (here, or on another relay of the cluster).
      if (session === undefined || this.closed) return;
      this.delivering.set(id, item);
      const outcome = await deliverOnce(session, q, item, {
        timeoutMs: this.limits.deliveryTimeoutMs,
        wrapHead: via?.wrapHead,
      });
      this.delivering.set(id, undefined);
      if (this.closed) return;
      if (outcome.kind === 'delivered') {
        await q.remove(item);
        this.lastErrors.delete(item.meta.id);
        this.opts.log.info(
          {
            event: 'queue-delivered',
            name: label,
            hostname,
            deliveryId: item.meta.id,
            status: outcome.status,
          },
          'queued request delivered',
        );
        continue;
      }
      if (outcome.kind === 'offline') {
        // Through another relay: the next periodic check looks again.
        if (via !== undefined) return;
        // Refused or cut by a connection going away: try another one, or stop until the
        // next connection. A short pause so a refusing client is not spun on.
        await this.sleep(200);
        continue;
      }
      const n = await q.noteAttempt(item);
      this.lastErrors.set(item.meta.id, outcome.message);
      if (n >= this.limits.maxAttempts) {
        await q.markFailed(item, {
          reason: 'attempts',
          message: outcome.message,
          attempts: n,
          failedAt: new Date(this.now()).toISOString(),
          ...(outcome.status !== undefined ? { lastStatus: outcome.status } : {}),
        });
        this.lastErrors.delete(item.meta.id);
        this.opts.log.warn(
          { event: 'queue-failed', name: label, deliveryId: item.meta.id, attempts: n },
          `queued request failed after ${n} attempts: ${outcome.message}`,
        );
        continue;
      }
      await this.sleep(Math.min(this.limits.retryMaxMs, this.limits.retryBaseMs * 2 ** (n - 1)));
    }
  }

  /** The tunnel's connection on another relay, if the cluster knows one (same tunnel id). */
  private async remoteFor(id: string, label: string): Promise<RemoteDelivery | undefined> {
    try {
      const record = await this.opts.named.get(label);
      if (record?.id !== id) return undefined;
      return await this.opts.remote?.(label);
    } catch {
      return undefined; // Redis away: the next check tries again
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const s = {
        timer: setTimeout(() => s.wake(), ms),
        wake: () => {
          this.sleepers.delete(s);
          resolve();
        },
      };
      s.timer.unref();
      this.sleepers.add(s);
    });
  }
}

/** Refuses everyone (used when a tunnel's stored access rules cannot be read). */
const REFUSE_ALL: CompiledAccess = (() => {
  const c = compileAccess({ allowIps: ['255.255.255.255/32'] });
  return { ...c, basicAuth: Buffer.alloc(32) };
})();
