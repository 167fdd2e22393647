/**
 * The cluster's route table in Redis: for each hostname label, which relays hold a live
 * connection of its tunnel, as leases with a TTL.
 *
 * `<prefix>route:<label>` is a hash: `owner` (who the label belongs to: `e:<label>` for an
 * ephemeral tunnel, `n:<record id>` for a named one), `epoch` (a fencing number, from the
 * counter `<prefix>epoch`, that changes whenever the label changes hands), `kind`, `access`
 * (the tunnel's visitor rules, so every relay enforces them) and one field `h:<node>` per
 * holder whose value is the lease's end (Redis clock, ms). Claims are one Lua script, so
 * two relays can never both win one label for two owners; renewals go in one call per
 * batch. A key outlives its last lease by `retainMs`, so relays answer "offline" (503)
 * rather than "no such tunnel" (404) for a label that was just online.
 */
import type { AccessPolicy } from '../../shared/protocol/tunnel.js';
import { luaScript, type RedisConnection, type RedisReply } from './redis.js';

const NOW = `local t = redis.call('TIME'); local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

/**
 * KEYS: route, epoch counter, named reservation. ARGV: node, owner, kind, access, leaseMs,
 * mode (new | resume | named), retainMs. Returns {1, epoch} or {0, reason}.
 */
const CLAIM = luaScript(`
${NOW}
local node, owner, kind, access, lease, mode, retain = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7])
if mode ~= 'named' and redis.call('EXISTS', KEYS[3]) == 1 then return {0, 'reserved'} end
local h = redis.call('HGETALL', KEYS[1])
local cur, epoch, live = nil, nil, 0
for i = 1, #h, 2 do
  local f, v = h[i], h[i + 1]
  if f == 'owner' then cur = v
  elseif f == 'epoch' then epoch = tonumber(v)
  elseif string.sub(f, 1, 2) == 'h:' then
    if tonumber(v) > now then live = live + 1 else redis.call('HDEL', KEYS[1], f) end
  end
end
if mode == 'new' and cur ~= nil then return {0, 'taken'} end
if cur == owner and epoch ~= nil and live > 0 then
  redis.call('HSET', KEYS[1], 'h:' .. node, now + lease, 'access', access)
  redis.call('PEXPIRE', KEYS[1], lease + retain)
  return {1, epoch}
end
if cur ~= nil and cur ~= owner and live > 0 and mode ~= 'named' then return {0, 'taken'} end
-- Free, expired, or a named record that was created again: a new epoch fences the old holders.
for i = 1, #h, 2 do
  if string.sub(h[i], 1, 2) == 'h:' then redis.call('HDEL', KEYS[1], h[i]) end
end
local e = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], 'owner', owner, 'epoch', e, 'kind', kind, 'access', access, 'h:' .. node, now + lease)
redis.call('PEXPIRE', KEYS[1], lease + retain)
return {1, e}
`);

/**
 * KEYS: route keys, then the epoch counter last. ARGV: node, leaseMs, retainMs, then per
 * key: epoch, owner, kind, access. Returns one flag per key: 1 = renewed, 0 = lost (the
 * label has another epoch now: someone else holds it). A key that vanished (Redis lost its
 * data) is written back with our epoch: nobody else can have claimed it in between.
 */
const RENEW = luaScript(`
${NOW}
local node, lease, retain = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {}
local n = #KEYS - 1
for i = 1, n do
  local base = 3 + (i - 1) * 4
  local epoch = ARGV[base + 1]
  local cur = redis.call('HGET', KEYS[i], 'epoch')
  if cur == false then
    redis.call('HSET', KEYS[i], 'owner', ARGV[base + 2], 'epoch', epoch, 'kind', ARGV[base + 3], 'access', ARGV[base + 4], 'h:' .. node, now + lease)
    redis.call('PEXPIRE', KEYS[i], lease + retain)
    local c = tonumber(redis.call('GET', KEYS[#KEYS]) or '0')
    if c < tonumber(epoch) then redis.call('SET', KEYS[#KEYS], epoch) end
    out[i] = 1
  elseif cur == epoch then
    redis.call('HSET', KEYS[i], 'h:' .. node, now + lease)
    redis.call('PEXPIRE', KEYS[i], lease + retain)
    out[i] = 1
  else
    redis.call('HDEL', KEYS[i], 'h:' .. node)
    out[i] = 0
  end
end
return out
`);

/** KEYS: route. ARGV: node, epoch. Drops this node's lease (its last connection left). */
const RELEASE = luaScript(`
if redis.call('HGET', KEYS[1], 'epoch') == ARGV[2] then redis.call('HDEL', KEYS[1], 'h:' .. ARGV[1]) end
return 1
`);

/** KEYS: route. Returns {owner, epoch, kind, access, holder...} with live holders only; {} if none. */
const LOOKUP = luaScript(`
${NOW}
local h = redis.call('HGETALL', KEYS[1])
if #h == 0 then return {} end
local owner, epoch, kind, access = '', '0', '', ''
local holders = {}
for i = 1, #h, 2 do
  local f, v = h[i], h[i + 1]
  if f == 'owner' then owner = v elseif f == 'epoch' then epoch = v
  elseif f == 'kind' then kind = v elseif f == 'access' then access = v
  elseif string.sub(f, 1, 2) == 'h:' and tonumber(v) > now then holders[#holders + 1] = string.sub(f, 3) end
end
local out = {owner, epoch, kind, access}
for i = 1, #holders do out[#out + 1] = holders[i] end
return out
`);

export type ClaimMode = 'new' | 'resume' | 'named';

export interface RouteClaim {
  label: string;
  owner: string;
  kind: 'ephemeral' | 'named';
  access: AccessPolicy | undefined;
  mode: ClaimMode;
}

export interface HeldRoute {
  label: string;
  owner: string;
  kind: 'ephemeral' | 'named';
  access: AccessPolicy | undefined;
  epoch: number;
}

export interface RouteInfo {
  owner: string;
  epoch: number;
  kind: 'ephemeral' | 'named';
  access: AccessPolicy | undefined;
  /** Nodes holding a live lease. */
  holders: string[];
}

export interface RouteTableOptions {
  redis: RedisConnection;
  prefix: string;
  node: string;
  leaseMs: number;
  /** How long a label stays known after its last lease. Default 60 s. */
  retainMs?: number;
}

/** Labels renewed per script call. */
const RENEW_BATCH = 500;

export class RouteTable {
  private readonly opts: RouteTableOptions;
  private readonly retainMs: number;

  constructor(opts: RouteTableOptions) {
    this.opts = opts;
    this.retainMs = opts.retainMs ?? 60_000;
  }

  key(label: string): string {
    return `${this.opts.prefix}route:${label}`;
  }

  private get epochKey(): string {
    return `${this.opts.prefix}epoch`;
  }

  /** Claims `label` for this node; the epoch, or undefined if another owner holds it. */
  async claim(c: RouteClaim): Promise<{ epoch: number } | { refused: string }> {
    const reply = await this.opts.redis.script(
      CLAIM,
      [this.key(c.label), this.epochKey, `${this.opts.prefix}named:${c.label}`],
      [
        this.opts.node,
        c.owner,
        c.kind,
        JSON.stringify(c.access ?? {}),
        this.opts.leaseMs,
        c.mode,
        this.retainMs,
      ],
    );
    const [ok, value] = Array.isArray(reply) ? reply : [];
    if (ok === 1) return { epoch: Number(value) };
    return { refused: String(value ?? 'taken') };
  }

  /** Renews the leases of `routes` (in batches); the flags say which are still ours. */
  async renew(routes: HeldRoute[]): Promise<boolean[]> {
    const out: boolean[] = [];
    for (let i = 0; i < routes.length; i += RENEW_BATCH) {
      const batch = routes.slice(i, i + RENEW_BATCH);
      const args: (string | number)[] = [this.opts.node, this.opts.leaseMs, this.retainMs];
      for (const r of batch) args.push(r.epoch, r.owner, r.kind, JSON.stringify(r.access ?? {}));
      const reply = await this.opts.redis.script(
        RENEW,
        [...batch.map((r) => this.key(r.label)), this.epochKey],
        args,
      );
      const flags = Array.isArray(reply) ? reply : [];
      for (let j = 0; j < batch.length; j++) out.push(flags[j] === 1);
    }
    return out;
  }

  async release(label: string, epoch: number): Promise<void> {
    await this.opts.redis.script(RELEASE, [this.key(label)], [this.opts.node, epoch]);
  }

  /** The route for `label`, or undefined if the label is unknown (never or long ago). */
  async lookup(label: string): Promise<RouteInfo | undefined> {
    const reply = await this.opts.redis.script(LOOKUP, [this.key(label)], []);
    return parseRoute(reply);
  }

  /** Every route (SCAN, at most `limit`), for the admin API. */
  async list(limit = 10_000): Promise<{ label: string; route: RouteInfo }[]> {
    const out: { label: string; route: RouteInfo }[] = [];
    let cursor = '0';
    const prefix = this.key('');
    do {
      const reply = await this.opts.redis.command([
        'SCAN',
        cursor,
        'MATCH',
        `${prefix}*`,
        'COUNT',
        '500',
      ]);
      const [next, keys] = Array.isArray(reply) ? reply : ['0', []];
      cursor = String(next);
      for (const key of Array.isArray(keys) ? keys : []) {
        if (out.length >= limit) break;
        const label = String(key).slice(prefix.length);
        const route = await this.lookup(label);
        if (route !== undefined) out.push({ label, route });
      }
    } while (cursor !== '0' && out.length < limit);
    return out.sort((a, b) => a.label.localeCompare(b.label));
  }
}

function parseRoute(reply: RedisReply): RouteInfo | undefined {
  if (!Array.isArray(reply) || reply.length < 4) return undefined;
  const [owner, epoch, kind, access, ...holders] = reply.map(String);
  let policy: AccessPolicy | undefined;
  try {
    const parsed = JSON.parse(access ?? '{}') as AccessPolicy;
    policy = Object.keys(parsed).length > 0 ? parsed : undefined;
  } catch {
    policy = undefined;
  }
  return {
    owner: owner ?? '',
    epoch: Number(epoch),
    kind: kind === 'named' ? 'named' : 'ephemeral',
    access: policy,
    holders,
  };
}
