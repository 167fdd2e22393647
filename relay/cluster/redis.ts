/**
 * The relay's connection to Redis (cluster mode): one node-redis client with a bounded
 * reconnect backoff and no offline queue, so a command issued while Redis is away fails
 * at once (the cluster fails closed for claims) instead of waiting. Counts errors for
 * /metrics and knows whether Redis answered lately (for /healthz and the degraded mode).
 */
import { createHash } from 'node:crypto';
import type { ErrorReply as ErrorReplyType, createClient } from 'redis';
import { QuickTunnelError } from '../../shared/errors.js';

/**
 * node-redis's error reply class, set by the first `connect()`, which loads node-redis: a
 * relay outside a cluster never loads it (test/e2e/startup-imports.test.ts).
 */
let ErrorReply: typeof ErrorReplyType | undefined;

/** Redis could not be reached or failed a command: cluster state is unavailable now. */
export class ClusterUnavailableError extends QuickTunnelError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('QT_ERR_CLUSTER_UNAVAILABLE', message, { cause: options.cause, retryable: true });
  }
}

export type RedisReply = string | number | null | RedisReply[] | { [k: string]: RedisReply };

export interface RedisConnectionOptions {
  url: string;
  /** Called on connection errors (already counted), for the relay's log. */
  onError?: (message: string) => void;
  /** Called when the connection becomes ready again after a loss. */
  onReady?: () => void;
}

/** Hides the password of a redis:// URL for logs and errors. */
export function redactRedisUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';
    return u.toString();
  } catch {
    return 'the --redis URL';
  }
}

/**
 * The code of a Redis error reply (also wrapped in a ClusterUnavailableError): RESP puts
 * it first in the reply, one upper-case word before the text ("NOSCRIPT No matching
 * script"), and node-redis keeps the reply as the message. Undefined for other errors.
 */
export function redisErrorCode(err: unknown): string | undefined {
  const reply = err instanceof ClusterUnavailableError ? err.cause : err;
  if (ErrorReply === undefined || !(reply instanceof ErrorReply)) return undefined;
  return /^[A-Z]+(?= |$)/.exec(reply.message)?.[0];
}

export class RedisConnection {
  /** Made by `connect()`. */
  private client: ReturnType<typeof createClient> | undefined;
  private readonly opts: RedisConnectionOptions;
  /** Commands or connection attempts that failed since start. */
  errors = 0;
  private closed = false;

  constructor(opts: RedisConnectionOptions) {
    this.opts = opts;
    const url = new URL(opts.url);
    if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
      throw new QuickTunnelError(
        'QT_ERR_CONFIG',
        `--redis must be a redis:// or rediss:// URL, got ${redactRedisUrl(opts.url)}`,
      );
    }
  }

  /** True while the connection is up (commands can be sent). */
  get healthy(): boolean {
    return this.client?.isReady === true;
  }

  /** Connects; rejects with a clear error if Redis does not answer within a few seconds. */
  async connect(): Promise<void> {
    const redis = await import('redis');
    ErrorReply = redis.ErrorReply;
    const { opts } = this;
    const client: ReturnType<typeof createClient> = redis.createClient({
      url: opts.url,
      disableOfflineQueue: true,
      socket: {
        connectTimeout: 2_000,
        // Quick retries at first (a Redis restart is found within a second), then every 1 s.
        reconnectStrategy: (retries: number) => Math.min(50 * 2 ** retries, 1_000),
      },
    });
    client.on('error', (err: Error) => {
      this.errors++;
      opts.onError?.(err.message);
    });
    client.on('ready', () => opts.onReady?.());
    this.client = client;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        client.connect(),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error('no answer within 5 s')), 5_000);
        }),
      ]);
    } catch (err) {
      client.destroy();
      throw new ClusterUnavailableError(
        `cannot connect to Redis at ${redactRedisUrl(this.opts.url)}: ${(err as Error).message}`,
        { cause: err },
      );
    } finally {
      clearTimeout(timer);
    }
  }

  /** Sends one command; failures become ClusterUnavailableError (and are counted). */
  async command(args: string[]): Promise<RedisReply> {
    if (this.closed) throw new ClusterUnavailableError('the relay is shutting down');
    if (this.client === undefined) throw new ClusterUnavailableError('not connected to Redis');
    try {
      return (await this.client.sendCommand(args)) as RedisReply;
    } catch (err) {
      this.errors++;
      throw new ClusterUnavailableError(`Redis failed: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Runs a Lua script (EVALSHA, loading it on NOSCRIPT). */
  async script(script: LuaScript, keys: string[], args: (string | number)[]): Promise<RedisReply> {
    const rest = [String(keys.length), ...keys, ...args.map(String)];
    try {
      return await this.command(['EVALSHA', script.sha, ...rest]);
    } catch (err) {
      if (redisErrorCode(err) !== 'NOSCRIPT') throw err;
      this.errors--; // not a failure: the script was not loaded yet
      return this.command(['EVAL', script.source, ...rest]);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    try {
      if (this.client?.isOpen === true) await this.client.close();
    } catch {
      this.client?.destroy();
    }
  }
}

export interface LuaScript {
  source: string;
  sha: string;
}

export function luaScript(source: string): LuaScript {
  return { source, sha: createHash('sha1').update(source).digest('hex') };
}
