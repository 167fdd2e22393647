/**
 * Automatic certificate for the relay: one certificate for DOMAIN and *.DOMAIN from any
 * ACME CA by DNS-01 (never one per tunnel), kept in `<data dir>/acme/` (mode 0600),
 * renewed at about two thirds of its lifetime (from its own notBefore/notAfter) with
 * jitter, retried with backoff and the CA's Retry-After on failure. The relay hands each
 * new certificate to `setSecureContext`, so renewal needs no restart and drops nothing.
 *
 * Over 500 lines on purpose: one state machine around the current certificate (load,
 * schedule, renew, share in a cluster, report status). The ACME exchange itself is in
 * order.ts, the files in files.ts, the CA's HTTP in ca-http.ts.
 */
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { ClusterState } from '../cluster/state.js';
import type { AxiosLike } from './ca-http.js';
import type { DnsProvider } from './dns-provider.js';
import { AcmeError } from './errors.js';
import { AcmeFiles, parseCertificate, type Loaded } from './files.js';
import { orderCertificate } from './order.js';

export const LETS_ENCRYPT_DIRECTORY = 'https://acme-v02.api.letsencrypt.org/directory';
export const LETS_ENCRYPT_STAGING_DIRECTORY =
  'https://acme-staging-v02.api.letsencrypt.org/directory';

/** Time and timers, injectable so tests can move a certificate's clock forward. */
export interface AcmeClock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemClock: AcmeClock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms).unref(),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

/** What `--acme …` configures. */
export interface AcmeSettings {
  email: string;
  /** ACME directory URL. Default: Let's Encrypt production. */
  directoryUrl?: string;
  /** Extra CA certificate (PEM text) to trust for the ACME server's TLS. */
  directoryCa?: string | undefined;
  /** External account binding (ZeroSSL, Google): key id and base64url HMAC key. */
  eab?: { kid: string; hmacKey: string } | undefined;
  dns: DnsProvider;
  /** Check propagation at this `HOST:PORT` instead of the zone's authoritative servers. */
  resolver?: string | undefined;
  /** How long the TXT record may take to appear. Default 120 s. */
  propagationTimeoutMs?: number;
  propagationIntervalMs?: number;
  /** First retry delay after a failure (doubles up to retryMaxMs). Default 1 min. */
  retryMinMs?: number;
  /** Default 6 h. */
  retryMaxMs?: number;
  /** Per HTTP request to the CA. Default 30 s. */
  requestTimeoutMs?: number;
  /** Polling the CA for a validation/order result: first delay (doubles, max 10 s). Default 1 s. */
  pollMinMs?: number;
  clock?: AcmeClock;
  random?: () => number;
  /**
   * Cluster mode: the certificate is shared through this state (Redis), one relay at a
   * time renews it (a lock), and every relay picks up a newer one.
   */
  cluster?: ClusterState | undefined;
  /** Cluster mode: how often to look for a certificate another relay renewed. Default 60 s. */
  clusterPollMs?: number;
}

export interface CertificatePem {
  cert: string;
  key: string;
}

export interface CertificateStatus {
  /** obtaining: no certificate yet; valid; renewing (a renewal is under way); expired. */
  state: 'obtaining' | 'valid' | 'renewing' | 'expired';
  notBefore: string | undefined;
  notAfter: string | undefined;
  /** Seconds until notAfter (negative once expired). */
  expiresInSeconds: number | undefined;
  renewAt: string | undefined;
  issuer: string | undefined;
  lastRenewalAt: string | undefined;
  lastError: { code: string; message: string; at: string } | undefined;
  nextAttemptAt: string | undefined;
  /** Failed attempts since the relay started. */
  failures: number;
}

/** A renewal never runs again sooner than this after a success (clock trouble guard). */
const MIN_RENEWAL_GAP_MS = 60 * 60_000;
/** Longest single timer: timers overflow past 2^31 ms, and a long sleep misses clock jumps. */
const MAX_TIMER_MS = 60 * 60_000;

/**
 * Events: `certificate` (CertificatePem: a certificate was loaded or issued and is now
 * served), `failed` (AcmeError: an attempt failed; the next one is scheduled).
 */
export class AcmeManager extends EventEmitter {
  private readonly clock: AcmeClock;
  private readonly random: () => number;
  private readonly files: AcmeFiles;
  private readonly directoryUrl: string;
  private current: Loaded | undefined;
  private renewAtMs: number | undefined;
  private nextAttemptMs: number | undefined;
  private timer: unknown;
  private attempt: Promise<'done' | 'busy'> | undefined;
  private attemptForced = false;
  private pollTimer: unknown;
  /** Cluster mode: issued here but not yet stored in Redis (retried by the poll). */
  private unpublished: CertificatePem | undefined;
  private consecutiveFailures = 0;
  private failures = 0;
  private lastError: CertificateStatus['lastError'];
  private lastRenewalAt: string | undefined;
  private closed = false;
  private readonly abort = new AbortController();
  private releaseHttp: (() => void) | undefined;
  private firstWaiters: ((pem: CertificatePem) => void)[] = [];

  constructor(
    private readonly settings: AcmeSettings & {
      domain: string;
      dataDir: string;
      log: Logger;
      /** Called with every certificate obtained or loaded: serve it. */
      onCertificate: (pem: CertificatePem) => void;
    },
  ) {
    super();
    this.clock = settings.clock ?? systemClock;
    this.random = settings.random ?? Math.random;
    this.directoryUrl = settings.directoryUrl ?? LETS_ENCRYPT_DIRECTORY;
    this.files = new AcmeFiles(settings.dataDir, settings.domain);
  }

  get domain(): string {
    return this.settings.domain;
  }

  /** Where the certificate is kept. */
  get certificatePath(): string {
    return this.files.certPath;
  }

  /**
   * Loads the stored certificate (serving it at once if still valid for DOMAIN and
   * *.DOMAIN) and schedules the next issuance. Never waits for the CA.
   */
  async start(): Promise<void> {
    const stored = await this.loadStored();
    const now = this.clock.now();
    if (stored !== undefined && stored.notAfterMs > now) {
      this.install(stored);
      this.settings.log.info(
        {
          event: 'acme_loaded',
          certificate: this.files.certPath,
          notAfter: new Date(stored.notAfterMs).toISOString(),
          renewAt: new Date(this.renewAtMs ?? now).toISOString(),
        },
        `certificate for ${this.domain} and *.${this.domain} loaded from ${this.files.certPath}`,
      );
    }
    if (this.settings.cluster !== undefined) {
      await this.adoptShared().catch((err: unknown) =>
        this.settings.log.warn(
          { event: 'acme_cluster_unavailable', err: (err as Error).message },
          `cannot read the shared certificate from the cluster state: ${(err as Error).message}`,
        ),
      );
      this.schedulePoll();
    }
    if (this.current !== undefined && this.current.notAfterMs > now) {
      this.scheduleAt(this.renewAtMs ?? now);
    } else {
      this.settings.log.info(
        {
          event: 'acme_obtaining',
          directory: this.directoryUrl,
          dns: this.settings.dns.description,
        },
        `obtaining a certificate for ${this.domain} and *.${this.domain} from ${this.directoryUrl} (DNS-01 via ${this.settings.dns.description}); HTTPS is served once it arrives`,
      );
      this.scheduleAt(now);
    }
  }

  /** Resolves with the first certificate served (stored or new). */
  whenCertificate(): Promise<CertificatePem> {
    if (this.current !== undefined) return Promise.resolve(this.current);
    return new Promise((resolve) => this.firstWaiters.push(resolve));
  }

  status(): CertificateStatus {
    const now = this.clock.now();
    const c = this.current;
    const iso = (ms: number | undefined): string | undefined =>
      ms === undefined ? undefined : new Date(ms).toISOString();
    return {
      state:
        c === undefined
          ? 'obtaining'
          : c.notAfterMs <= now
            ? 'expired'
            : this.attempt !== undefined
              ? 'renewing'
              : 'valid',
      notBefore: iso(c?.notBeforeMs),
      notAfter: iso(c?.notAfterMs),
      expiresInSeconds: c === undefined ? undefined : Math.floor((c.notAfterMs - now) / 1000),
      renewAt: iso(this.renewAtMs),
      issuer: c?.issuer,
      lastRenewalAt: this.lastRenewalAt,
      lastError: this.lastError,
      nextAttemptAt: iso(this.nextAttemptMs),
      failures: this.failures,
    };
  }

  /**
   * Runs one issuance now (or joins the one under way). Rejects with its error, or in
   * cluster mode when another relay holds the renewal lock.
   */
  async renewNow(): Promise<void> {
    if ((await this.run(true)) === 'busy') {
      throw new AcmeError(
        'QT_ERR_ACME_CLUSTER',
        `another relay of the cluster is renewing the certificate for ${this.domain}`,
      );
    }
  }

  /**
   * One attempt at a time. A forced one (renewNow) never settles for a scheduled one
   * that may decide the certificate is still fresh: it waits for it, then runs.
   */
  private async run(force: boolean): Promise<'done' | 'busy'> {
    while (this.attempt !== undefined) {
      if (this.attemptForced || !force) return this.attempt;
      await this.attempt.catch(() => {});
    }
    this.attemptForced = force;
    this.attempt = (
      this.settings.cluster === undefined
        ? this.issue().then(() => 'done' as const)
        : this.clusterAttempt(this.settings.cluster, force)
    ).finally(() => {
      this.attempt = undefined;
    });
    return this.attempt;
  }

  // --- cluster mode -----------------------------------------------------------------

  private get sharedName(): string {
    return `acme:${this.domain}`;
  }

  /**
   * One relay at a time: take the lock, look again (another relay may have just
   * finished), issue, share. Without the lock: 'busy' (look again after a poll interval).
   */
  private async clusterAttempt(cluster: ClusterState, force: boolean): Promise<'done' | 'busy'> {
    const fresh = (): boolean =>
      !force && this.current !== undefined && (this.renewAtMs ?? 0) > this.clock.now();
    await clusterCall(() => this.adoptShared());
    if (fresh()) return 'done';
    const lockTtlMs = (this.settings.propagationTimeoutMs ?? 120_000) + 10 * 60_000;
    const lock = await clusterCall(() => cluster.acquireLock(this.sharedName, lockTtlMs));
    if (lock === undefined) return 'busy';
    try {
      await clusterCall(() => this.adoptShared());
      if (fresh()) return 'done';
      await this.issue();
      if (this.current !== undefined) {
        this.unpublished = { cert: this.current.cert, key: this.current.key };
        await this.publish().catch((err: unknown) =>
          this.settings.log.warn(
            { event: 'acme_cluster_unavailable', err: (err as Error).message },
            `the new certificate could not be shared with the other relays yet: ${(err as Error).message}; retrying`,
          ),
        );
      }
      return 'done';
    } finally {
      await lock.release().catch(() => {}); // it expires by itself anyway
    }
  }

  private async publish(): Promise<void> {
    const pem = this.unpublished;
    if (pem === undefined || this.settings.cluster === undefined) return;
    await this.settings.cluster.setBlob(
      this.sharedName,
      JSON.stringify({ ...pem, directoryUrl: this.directoryUrl }),
    );
    if (this.unpublished === pem) this.unpublished = undefined;
  }

  /** Serves the shared certificate if it is newer than ours. */
  private async adoptShared(): Promise<void> {
    const raw = await this.settings.cluster?.getBlob(this.sharedName);
    if (raw === undefined) return;
    let shared: CertificatePem & { directoryUrl?: string };
    try {
      shared = JSON.parse(raw.toString('utf8')) as typeof shared;
    } catch {
      return;
    }
    if (shared.directoryUrl !== this.directoryUrl) return;
    const loaded = parseCertificate(shared, this.domain);
    if (loaded === undefined || loaded.notAfterMs <= this.clock.now()) return;
    if (this.current !== undefined && loaded.notAfterMs <= this.current.notAfterMs) return;
    await this.store(shared);
    this.install(loaded);
    this.settings.log.info(
      {
        event: 'acme_reloaded',
        notAfter: new Date(loaded.notAfterMs).toISOString(),
        issuer: loaded.issuer,
      },
      `serving the certificate for ${this.domain} another relay of the cluster obtained (valid until ${new Date(loaded.notAfterMs).toISOString()})`,
    );
  }

  private schedulePoll(): void {
    if (this.closed) return;
    this.pollTimer = this.clock.setTimeout(() => {
      const poll = async (): Promise<void> => {
        await this.publish();
        await this.adoptShared(); // the renewal timer then finds it fresh
      };
      poll()
        .catch((err: unknown) =>
          this.settings.log.debug({ err: (err as Error).message }, 'acme cluster poll failed'),
        )
        .finally(() => this.schedulePoll());
    }, this.settings.clusterPollMs ?? 60_000);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.abort.abort();
    this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.clock.clearTimeout(this.pollTimer);
    this.pollTimer = undefined;
    const running = this.attempt;
    if (running !== undefined) {
      let t: NodeJS.Timeout | undefined;
      await Promise.race([running.catch(() => {}), new Promise((r) => (t = setTimeout(r, 5_000)))]);
      clearTimeout(t);
    }
    this.releaseHttp?.();
    this.releaseHttp = undefined;
  }

  // --- schedule -------------------------------------------------------------------

  private scheduleAt(atMs: number): void {
    if (this.closed) return;
    this.clock.clearTimeout(this.timer);
    this.nextAttemptMs = atMs;
    const delay = Math.max(0, atMs - this.clock.now());
    this.timer = this.clock.setTimeout(
      () => {
        this.timer = undefined;
        if (this.clock.now() < atMs) {
          this.scheduleAt(atMs); // a long wait, in steps
          return;
        }
        this.runScheduled();
      },
      Math.min(delay, MAX_TIMER_MS),
    );
  }

  private runScheduled(): void {
    this.run(false).then(
      (result) => {
        this.consecutiveFailures = 0;
        const now = this.clock.now();
        if (result === 'busy') {
          // Another relay renews: its certificate arrives through the shared state.
          this.settings.log.info(
            { event: 'acme_cluster_busy' },
            `another relay of the cluster is renewing the certificate for ${this.domain}; waiting for it`,
          );
          this.scheduleAt(now + (this.settings.clusterPollMs ?? 60_000));
          return;
        }
        let next = this.renewAtMs ?? now;
        if (next < now + MIN_RENEWAL_GAP_MS) {
          this.settings.log.warn(
            { event: 'acme_clock', renewAt: new Date(next).toISOString() },
            'the new certificate is already due for renewal by this clock: is the system clock right?',
          );
          next = now + MIN_RENEWAL_GAP_MS;
        }
        this.scheduleAt(next);
      },
      (err: unknown) => {
        if (this.closed) return;
        this.consecutiveFailures++;
        this.failures++;
        const e = toAcmeError(err);
        const minMs = this.settings.retryMinMs ?? 60_000;
        const maxMs = this.settings.retryMaxMs ?? 6 * 3600_000;
        const backoff = Math.min(maxMs, minMs * 2 ** (this.consecutiveFailures - 1));
        const delay = Math.max(backoff * (0.5 + this.random() / 2), e.retryAfterMs ?? 0);
        const now = this.clock.now();
        this.lastError = { code: e.code, message: e.message, at: new Date(now).toISOString() };
        const c = this.current;
        const left = c === undefined ? undefined : c.notAfterMs - now;
        const urgent =
          c !== undefined && left !== undefined && left < (c.notAfterMs - c.notBeforeMs) / 6;
        const fields = {
          event: 'acme_failed',
          code: e.code,
          attempt: this.consecutiveFailures,
          nextAttemptInSeconds: Math.round(delay / 1000),
          ...(left === undefined ? {} : { expiresInSeconds: Math.floor(left / 1000) }),
        };
        const what =
          c === undefined
            ? `could not obtain a certificate for ${this.domain} (HTTPS stays off until one arrives)`
            : urgent
              ? `CERTIFICATE FOR ${this.domain} EXPIRES IN ${formatDuration(left ?? 0)} and renewal failed`
              : `could not renew the certificate for ${this.domain} (still serving the current one, valid ${formatDuration(left ?? 0)} more)`;
        const line = `${what}: ${e.message}; next attempt in ${formatDuration(delay)}`;
        if (c !== undefined && !urgent) this.settings.log.warn(fields, line);
        else this.settings.log.error(fields, line);
        this.scheduleAt(now + delay);
        this.emit('failed', e);
      },
    );
  }

  private install(loaded: Loaded): void {
    this.current = loaded;
    const lifetime = loaded.notAfterMs - loaded.notBeforeMs;
    // Two thirds into its own lifetime, a little earlier at random, so relays started
    // together (and everyone's 90-day certificates) do not all renew in the same minute.
    const jitter = this.random() * Math.min(lifetime / 30, 24 * 3600_000);
    this.renewAtMs = Math.round(loaded.notBeforeMs + (lifetime * 2) / 3 - jitter);
    this.settings.onCertificate({ cert: loaded.cert, key: loaded.key });
    for (const resolve of this.firstWaiters.splice(0)) resolve(loaded);
    this.emit('certificate', { cert: loaded.cert, key: loaded.key });
  }

  // --- issuance -------------------------------------------------------------------

  private checkOpen(): void {
    if (this.closed) throw new AcmeError('QT_ERR_ACME_ORDER', 'the relay is shutting down');
  }

  private async issue(): Promise<void> {
    const log = this.settings.log;
    const domain = this.domain;
    // Loaded on first use, with undici under it: a relay without ACME never loads them.
    const acme = (await import('acme-client')).default;
    const { useCaHttp } = await import('./ca-http.js');
    // acme-client's axios types come in CJS and ESM flavours; ours is the shape used.
    this.releaseHttp ??= useCaHttp(acme.axios as unknown as AxiosLike, this.directoryUrl, {
      ca: this.settings.directoryCa,
      requestTimeoutMs: this.settings.requestTimeoutMs ?? 30_000,
    });
    this.checkOpen();
    const accountKey = await this.files.accountKey(() =>
      acme.crypto.createPrivateEcdsaKey('P-256'),
    );
    const pem = await orderCertificate({
      acme,
      directoryUrl: this.directoryUrl,
      accountKey,
      domain,
      settings: this.settings,
      log,
      signal: this.abort.signal,
      checkOpen: () => this.checkOpen(),
    });
    const loaded = parseCertificate(pem, domain);
    if (loaded === undefined) {
      throw new AcmeError(
        'QT_ERR_ACME_ORDER',
        `the CA issued a certificate that does not cover ${domain} and *.${domain}`,
      );
    }
    await this.store(pem);
    this.lastRenewalAt = new Date(this.clock.now()).toISOString();
    this.lastError = undefined;
    this.install(loaded);
    log.info(
      {
        event: 'acme_issued',
        certificate: this.files.certPath,
        notAfter: new Date(loaded.notAfterMs).toISOString(),
        renewAt: new Date(this.renewAtMs ?? 0).toISOString(),
        issuer: loaded.issuer,
      },
      `certificate for ${domain} and *.${domain} issued by ${loaded.issuer}, valid until ${new Date(loaded.notAfterMs).toISOString()}; now serving it`,
    );
  }

  private async loadStored(): Promise<Loaded | undefined> {
    const stored = await this.files.read();
    if (stored === undefined) return undefined;
    const { pem, meta } = stored;
    const loaded = parseCertificate(pem, this.domain);
    if (loaded === undefined) {
      this.settings.log.warn(
        { event: 'acme_stored_unusable', certificate: this.files.certPath },
        `the stored certificate ${this.files.certPath} does not fit ${this.domain} (or its key); getting a new one`,
      );
      return undefined;
    }
    if (meta.directoryUrl !== undefined && meta.directoryUrl !== this.directoryUrl) {
      // Another CA (staging → production): serve it meanwhile, replace it now.
      this.settings.log.info(
        { event: 'acme_directory_changed', from: meta.directoryUrl, to: this.directoryUrl },
        `the stored certificate came from ${meta.directoryUrl}; getting one from ${this.directoryUrl}`,
      );
      return {
        ...loaded,
        notBeforeMs: loaded.notBeforeMs - (loaded.notAfterMs - loaded.notBeforeMs),
      };
    }
    return loaded;
  }

  private async store(pem: CertificatePem): Promise<void> {
    await this.files.write(pem, {
      directoryUrl: this.directoryUrl,
      obtainedAt: new Date(this.clock.now()).toISOString(),
    });
  }
}

/** Redis trouble during a cluster step becomes one clear, retryable error. */
async function clusterCall<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof AcmeError) throw err;
    throw new AcmeError(
      'QT_ERR_ACME_CLUSTER',
      `the cluster state (Redis) is unavailable: ${(err as Error).message}; the certificate is renewed once it answers`,
      { cause: err },
    );
  }
}

function toAcmeError(err: unknown): AcmeError {
  if (err instanceof AcmeError) return err;
  return new AcmeError('QT_ERR_ACME_ORDER', (err as Error).message ?? String(err), {
    cause: err,
  });
}

function formatDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} days`;
}
