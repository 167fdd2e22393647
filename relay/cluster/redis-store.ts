/**
 * The named-tunnel store in Redis (cluster mode): every relay of the cluster sees the same
 * reservations, and a name is created at most once cluster-wide (one atomic script). A
 * record is a hash `<prefix>named:<name>`; the set `<prefix>names` lists the names.
 */
import {
  NameTakenError,
  StoreError,
  type TunnelQueueSetting,
  type TunnelRecord,
  type TunnelStore,
} from '../tunnels/store.js';
import { luaScript, type RedisConnection, type RedisReply } from './redis.js';

const CREATE = luaScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'name', ARGV[2], 'credentialHash', ARGV[3],
  'createdAt', ARGV[4], 'lastSeenAt', ARGV[5], 'queue', ARGV[6], 'owner', ARGV[7])
redis.call('SADD', KEYS[2], ARGV[2])
if ARGV[7] ~= '' then redis.call('SADD', ARGV[8] .. ARGV[7], ARGV[2]) end
return 1
`);

/** Store-and-forward on/off ('on' | 'off'; an empty or missing field = never set). */
const SET_QUEUE = luaScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'queue', ARGV[1])
return 1
`);

const DELETE = luaScript(`
redis.call('SREM', KEYS[2], ARGV[1])
local owner = redis.call('HGET', KEYS[1], 'owner')
if owner and owner ~= '' then redis.call('SREM', ARGV[2] .. owner, ARGV[1]) end
return redis.call('DEL', KEYS[1])
`);

const TOUCH = luaScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'lastSeenAt', ARGV[1]) end
return 1
`);

/** Most records `list()` returns (bounded; a relay with more names lists the first ones). */
const MAX_LIST = 100_000;

export class RedisTunnelStore implements TunnelStore {
  private readonly redis: RedisConnection;
  private readonly prefix: string;

  constructor(redis: RedisConnection, prefix: string) {
    this.redis = redis;
    this.prefix = prefix;
  }

  private key(name: string): string {
    return `${this.prefix}named:${name}`;
  }

  private get namesKey(): string {
    return `${this.prefix}names`;
  }

  /** `<prefix>owner:<owner>`: the set of names one client created (the quota). */
  private get ownerPrefix(): string {
    return `${this.prefix}owner:`;
  }

  async countOwned(owner: string): Promise<number> {
    return Number(await this.run(['SCARD', `${this.ownerPrefix}${owner}`]));
  }

  async get(name: string): Promise<TunnelRecord | undefined> {
    return parseRecord(await this.run(['HGETALL', this.key(name)]));
  }

  async create(record: TunnelRecord): Promise<void> {
    const created = await this.redis
      .script(
        CREATE,
        [this.key(record.name), this.namesKey],
        [
          record.id,
          record.name,
          record.credentialHash,
          record.createdAt,
          record.lastSeenAt ?? '',
          record.queue === undefined ? '' : record.queue.enabled ? 'on' : 'off',
          record.owner ?? '',
          this.ownerPrefix,
        ],
      )
      .catch((err: unknown) => {
        throw this.wrap(err);
      });
    if (created !== 1) throw new NameTakenError(record.name);
  }

  async delete(name: string): Promise<boolean> {
    const n = await this.redis
      .script(DELETE, [this.key(name), this.namesKey], [name, this.ownerPrefix])
      .catch((err: unknown) => {
        throw this.wrap(err);
      });
    return n === 1;
  }

  async list(): Promise<TunnelRecord[]> {
    const names = await this.run(['SMEMBERS', this.namesKey]);
    const list = (Array.isArray(names) ? names : []).slice(0, MAX_LIST).map(String).sort();
    const records: TunnelRecord[] = [];
    // In batches of 100 (one round trip each).
    for (let i = 0; i < list.length; i += 100) {
      const batch = await Promise.all(list.slice(i, i + 100).map((n) => this.get(n)));
      for (const r of batch) if (r !== undefined) records.push(r);
    }
    return records;
  }

  async touch(name: string, at: Date): Promise<void> {
    await this.redis.script(TOUCH, [this.key(name)], [at.toISOString()]).catch((err: unknown) => {
      throw this.wrap(err);
    });
  }

  async setQueue(name: string, queue: TunnelQueueSetting): Promise<TunnelRecord | undefined> {
    const set = await this.redis
      .script(SET_QUEUE, [this.key(name)], [queue.enabled ? 'on' : 'off'])
      .catch((err: unknown) => {
        throw this.wrap(err);
      });
    return set === 1 ? this.get(name) : undefined;
  }

  async close(): Promise<void> {}

  private async run(args: string[]): Promise<RedisReply> {
    try {
      return await this.redis.command(args);
    } catch (err) {
      throw this.wrap(err);
    }
  }

  private wrap(err: unknown): StoreError {
    return new StoreError(
      `the cluster's tunnel store (Redis) is unavailable: ${(err as Error).message}; try again shortly`,
      { cause: err },
    );
  }
}

function parseRecord(reply: RedisReply): TunnelRecord | undefined {
  const fields: Record<string, string> = {};
  if (Array.isArray(reply)) {
    for (let i = 0; i + 1 < reply.length; i += 2) fields[String(reply[i])] = String(reply[i + 1]);
  } else if (reply !== null && typeof reply === 'object') {
    for (const [k, v] of Object.entries(reply)) fields[k] = String(v);
  }
  const { id, name, credentialHash, createdAt, lastSeenAt, queue, owner } = fields;
  if (id === undefined || name === undefined || credentialHash === undefined) return undefined;
  return {
    id,
    name,
    credentialHash,
    createdAt: createdAt ?? '',
    lastSeenAt: lastSeenAt === undefined || lastSeenAt === '' ? null : lastSeenAt,
    ...(queue === 'on' || queue === 'off' ? { queue: { enabled: queue === 'on' } } : {}),
    ...(owner !== undefined && owner !== '' ? { owner } : {}),
  };
}
