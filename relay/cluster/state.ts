/**
 * Small shared state for other relay features in cluster mode (the ACME certificate is
 * the first user): named blobs every relay reads and writes, and locks with a TTL so one
 * relay at a time does a job (renewing the certificate). A lock is fenced by its random
 * token: release and extend only act while the caller still holds it.
 */
import { randomBytes } from 'node:crypto';
import { luaScript, type RedisConnection } from './redis.js';

const RELEASE = luaScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`);

const EXTEND = luaScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
`);

export interface ClusterLock {
  /** False once the lock was lost (expired and taken, or released). */
  extend(ttlMs: number): Promise<boolean>;
  release(): Promise<void>;
}

export interface ClusterState {
  /** The blob stored under `name`, or undefined. */
  getBlob(name: string): Promise<Buffer | undefined>;
  /** Stores `value` under `name` (for `ttlMs` if given, else for good). */
  setBlob(name: string, value: Buffer | string, ttlMs?: number): Promise<void>;
  /** Takes the lock `name` for `ttlMs` if nobody holds it; undefined if someone does. */
  acquireLock(name: string, ttlMs: number): Promise<ClusterLock | undefined>;
}

export class RedisClusterState implements ClusterState {
  private readonly redis: RedisConnection;
  private readonly prefix: string;

  constructor(redis: RedisConnection, prefix: string) {
    this.redis = redis;
    this.prefix = prefix;
  }

  async getBlob(name: string): Promise<Buffer | undefined> {
    const v = await this.redis.command(['GET', `${this.prefix}blob:${name}`]);
    // Blobs are stored base64 (node-redis returns strings).
    return typeof v === 'string' ? Buffer.from(v, 'base64') : undefined;
  }

  async setBlob(name: string, value: Buffer | string, ttlMs?: number): Promise<void> {
    const data = (typeof value === 'string' ? Buffer.from(value) : value).toString('base64');
    const args = ['SET', `${this.prefix}blob:${name}`, data];
    if (ttlMs !== undefined) args.push('PX', String(Math.max(1, Math.round(ttlMs))));
    await this.redis.command(args);
  }

  async acquireLock(name: string, ttlMs: number): Promise<ClusterLock | undefined> {
    const key = `${this.prefix}lock:${name}`;
    const token = randomBytes(16).toString('hex');
    const ok = await this.redis.command([
      'SET',
      key,
      token,
      'NX',
      'PX',
      String(Math.max(1, Math.round(ttlMs))),
    ]);
    if (ok !== 'OK') return undefined;
    return {
      extend: async (ms) =>
        (await this.redis.script(EXTEND, [key], [token, Math.max(1, Math.round(ms))])) === 1,
      release: async () => {
        await this.redis.script(RELEASE, [key], [token]);
      },
    };
  }
}
