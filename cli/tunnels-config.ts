/**
 * `quick-tunnel.yml`: several tunnels (with path routes) for `quick-tunnel start`.
 *
 *     relay: https://tunnel.example.com
 *     tunnels:
 *       web:
 *         target: 3000
 *         host-header: rewrite
 *         routes:              # first match wins
 *           - path: /api
 *             target: 8080
 *       hooks:
 *         target: 4000
 *         basic-auth: ${HOOKS_AUTH}
 *
 * Parsed with `yaml` (its line counter gives every error a line and column), validated
 * completely before anything connects: an error names the file, the line and the key
 * (`quick-tunnel.yml:9:19: tunnels.web.routes[0].target: …`). `${VAR}` in any value is
 * replaced by the environment variable (`${VAR:-default}` when unset or empty, `$$` for
 * a literal `$`); an unset variable without a default is an error. A config module: it
 * reads process.env (the only other one besides config.ts).
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import {
  LineCounter,
  isMap,
  isPair,
  isScalar,
  isSeq,
  parseDocument,
  type Node,
  type Pair,
  type YAMLMap,
} from 'yaml';
import { ConfigError, QuickTunnelError } from '../shared/errors.js';
import { parseRelayUrl } from './config.js';
import { normalizeRoutePath, routeMatches } from './origin/router.js';
import { parseTarget, type OriginTarget } from './origin/target.js';
import { normalizeFingerprint } from './tunnel/client.js';
import { accessPolicy } from './tunnel/runner.js';

export const TUNNELS_CONFIG_NAME = 'quick-tunnel.yml';

export interface RouteConfig {
  /** Normalized prefix (`/api`). */
  path: string;
  target: OriginTarget;
  line: number;
}

export interface TunnelConfig {
  /** The key under `tunnels:`: how `start NAME` and the `tunnel` field of events name it. */
  key: string;
  line: number;
  target: OriginTarget;
  /** A named tunnel (created with `tunnel create`); else an ephemeral hostname. */
  name: string | undefined;
  hostHeader: string | undefined;
  routes: RouteConfig[];
  basicAuth: string | undefined;
  allowIp: string[] | undefined;
  originInsecure: boolean;
  /** Sessions to the relay (HA). Undefined = the command's default. */
  connections: number | undefined;
}

export interface TunnelsConfig {
  /** The file as given or found. */
  file: string;
  relay: string | undefined;
  token: string | undefined;
  /** Absolute path (relative ones are relative to the config file). */
  ca: string | undefined;
  /** Normalized (64 hex digits). */
  caFingerprint: string | undefined;
  /** In file order. */
  tunnels: TunnelConfig[];
}

const TOP_KEYS = ['relay', 'token', 'ca', 'ca-fingerprint', 'tunnels'] as const;
const TUNNEL_KEYS = [
  'target',
  'name',
  'host-header',
  'routes',
  'basic-auth',
  'allow-ip',
  'origin-insecure',
  'connections',
] as const;
const ROUTE_KEYS = ['path', 'target'] as const;
const TUNNEL_KEY_RE = /^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$/;

/**
 * Which file `quick-tunnel start` reads: `--config FILE`; else `./quick-tunnel.yml`;
 * else `quick-tunnel.yml` in the config directory, next to the `config.json` that
 * `login` writes.
 */
export function findTunnelsConfig(
  explicit: string | undefined,
  cwd: string,
  configDir: string,
): string {
  if (explicit !== undefined) {
    if (!existsSync(explicit)) throw new ConfigError(`the config file ${explicit} does not exist`);
    return explicit;
  }
  const local = path.join(cwd, TUNNELS_CONFIG_NAME);
  if (existsSync(local)) return TUNNELS_CONFIG_NAME;
  const global = path.join(configDir, TUNNELS_CONFIG_NAME);
  if (existsSync(global)) return global;
  throw new ConfigError(
    `no ${TUNNELS_CONFIG_NAME} in this directory or in ${configDir}, and no --config FILE`,
    {
      hint: `write one (see "Config file" in the README), e.g. tunnels: { web: { target: 3000 } }`,
    },
  );
}

/** A ConfigError whose message starts with `file:line:col: key:` already. */
class PositionedConfigError extends ConfigError {}

/** Reads and validates a config file. Throws ConfigError naming file:line:col and key. */
export function loadTunnelsConfig(
  file: string,
  env: NodeJS.ProcessEnv = process.env,
): TunnelsConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read the config file ${file}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  return parseTunnelsConfig(text, file, env);
}

/** Validates config text (`file` is for messages and relative paths). */
export function parseTunnelsConfig(
  text: string,
  file: string,
  env: NodeJS.ProcessEnv = process.env,
): TunnelsConfig {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: false, prettyErrors: false });
  const fail = (node: Node | Pair | undefined | null, key: string, message: string): never => {
    const offset = node == null ? 0 : rangeStart(node);
    const pos = lines.linePos(offset);
    throw new PositionedConfigError(
      `${file}:${pos.line}:${pos.col}: ${key === '' ? '' : `${key}: `}${message}`,
    );
  };
  const firstError = doc.errors[0];
  if (firstError !== undefined) {
    // prettyErrors off: the message is yaml's own, without its position and excerpt.
    const pos = lines.linePos(firstError.pos[0]);
    throw new ConfigError(`${file}:${pos.line}:${pos.col}: not valid YAML: ${firstError.message}`);
  }
  const lineOf = (node: Node | Pair): number => lines.linePos(rangeStart(node)).line;

  /** A string value with ${VAR} expanded; numbers and booleans as text. */
  const str = (node: Node | null | undefined, key: string, pair: Pair): string => {
    if (!isScalar(node) || node.value === null || typeof node.value === 'object') {
      return fail(node ?? pair, key, 'expected a value (text or a number)');
    }
    const raw = String(node.value);
    return raw.replace(
      /\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g,
      (match, name: string | undefined, fallback: string | undefined) => {
        if (match === '$$') return '$';
        const value = env[name!];
        if (value !== undefined && value !== '') return value;
        if (fallback !== undefined) return fallback;
        if (value === '') return '';
        return fail(
          node,
          key,
          `the environment variable ${name} is not set (write \${${name}:-default} for a default)`,
        );
      },
    );
  };
  const keysOf = (
    map: YAMLMap,
    allowed: readonly string[],
    where: string,
  ): Map<string, Pair<Node, Node | null>> => {
    const out = new Map<string, Pair<Node, Node | null>>();
    for (const pair of map.items as Pair<Node, Node | null>[]) {
      const name = isScalar(pair.key) ? String(pair.key.value) : undefined;
      const full = where === '' ? (name ?? '?') : `${where}.${name ?? '?'}`;
      if (name === undefined) fail(pair.key ?? pair, where, 'keys must be plain names');
      if (!allowed.includes(name!)) {
        fail(pair.key, full, `unknown key '${name}' (allowed here: ${allowed.join(', ')})`);
      }
      const twice = out.get(name!);
      if (twice !== undefined) {
        fail(pair.key, full, `'${name}' appears twice (also on line ${lineOf(twice)})`);
      }
      out.set(name!, pair);
    }
    return out;
  };
  const wrap = <T>(node: Node | Pair | null | undefined, key: string, f: () => T): T => {
    try {
      return f();
    } catch (err) {
      // A value's own error gets its place in the file; a nested fail() has one already.
      if (err instanceof QuickTunnelError && !(err instanceof PositionedConfigError)) {
        return fail(node, key, err.message);
      }
      throw err;
    }
  };

  const root = doc.contents;
  if (!isMap(root)) {
    return fail(
      root,
      '',
      `expected a mapping with a 'tunnels:' key (see "Config file" in the README)`,
    );
  }
  const top = keysOf(root, TOP_KEYS, '');
  const out: TunnelsConfig = {
    file,
    relay: undefined,
    token: undefined,
    ca: undefined,
    caFingerprint: undefined,
    tunnels: [],
  };
  const relayPair = top.get('relay');
  if (relayPair !== undefined) {
    const relay = str(relayPair.value, 'relay', relayPair);
    wrap(relayPair.value, 'relay', () => parseRelayUrl(relay));
    out.relay = relay;
  }
  const tokenPair = top.get('token');
  if (tokenPair !== undefined) out.token = str(tokenPair.value, 'token', tokenPair);
  const caPair = top.get('ca');
  if (caPair !== undefined) {
    out.ca = path.resolve(path.dirname(path.resolve(file)), str(caPair.value, 'ca', caPair));
  }
  const fpPair = top.get('ca-fingerprint');
  if (fpPair !== undefined) {
    const fp = str(fpPair.value, 'ca-fingerprint', fpPair);
    out.caFingerprint = wrap(fpPair.value, 'ca-fingerprint', () => normalizeFingerprint(fp));
  }

  const tunnelsPair = top.get('tunnels');
  if (tunnelsPair === undefined) {
    return fail(root, 'tunnels', "missing: list your tunnels under 'tunnels:'");
  }
  const tunnels = tunnelsPair.value;
  if (!isMap(tunnels) || tunnels.items.length === 0) {
    return fail(
      tunnels ?? tunnelsPair,
      'tunnels',
      'expected at least one tunnel: NAME: { target: PORT }',
    );
  }
  const namedBy = new Map<string, string>();
  const keyLines = new Map<string, number>();
  for (const pair of tunnels.items as Pair<Node, Node | null>[]) {
    const key = isScalar(pair.key) ? String(pair.key.value) : '';
    const where = `tunnels.${key}`;
    const twice = keyLines.get(key);
    if (twice !== undefined) {
      fail(pair.key, where, `duplicate tunnel name '${key}' (also on line ${twice})`);
    }
    keyLines.set(key, lineOf(pair));
    if (!TUNNEL_KEY_RE.test(key)) {
      fail(pair.key ?? pair, where, 'a tunnel name is letters, digits, - and _ (up to 63)');
    }
    const body = pair.value;
    // `web: 3000` is short for `web: { target: 3000 }`.
    if (isScalar(body)) {
      const target = wrap(body, `${where}.target`, () =>
        parseTarget(str(body as Node, where, pair)),
      );
      out.tunnels.push({
        key,
        line: lineOf(pair),
        target,
        name: undefined,
        hostHeader: undefined,
        routes: [],
        basicAuth: undefined,
        allowIp: undefined,
        originInsecure: false,
        connections: undefined,
      });
      continue;
    }
    if (!isMap(body)) {
      return fail(body ?? pair, where, "expected the tunnel's settings (at least target: PORT)");
    }
    const keys = keysOf(body as YAMLMap, TUNNEL_KEYS, where);
    const targetPair = keys.get('target');
    if (targetPair === undefined) {
      return fail(
        pair.key,
        `${where}.target`,
        'missing: where requests go (PORT, HOST:PORT or a URL)',
      );
    }
    const targetText = str(targetPair.value, `${where}.target`, targetPair);
    const target = wrap(targetPair.value, `${where}.target`, () => parseTarget(targetText));
    const entry: TunnelConfig = {
      key,
      line: lineOf(pair),
      target,
      name: undefined,
      hostHeader: undefined,
      routes: [],
      basicAuth: undefined,
      allowIp: undefined,
      originInsecure: false,
      connections: undefined,
    };
    const namePair = keys.get('name');
    if (namePair !== undefined) {
      const name = str(namePair.value, `${where}.name`, namePair).toLowerCase();
      const other = namedBy.get(name);
      if (other !== undefined) {
        fail(
          namePair.value,
          `${where}.name`,
          `duplicate name '${name}': tunnels.${other} serves it already (one process serves a named tunnel once)`,
        );
      }
      namedBy.set(name, key);
      entry.name = name;
    }
    const hostPair = keys.get('host-header');
    if (hostPair !== undefined) {
      entry.hostHeader = str(hostPair.value, `${where}.host-header`, hostPair);
    }
    const authPair = keys.get('basic-auth');
    if (authPair !== undefined)
      entry.basicAuth = str(authPair.value, `${where}.basic-auth`, authPair);
    const ipPair = keys.get('allow-ip');
    if (ipPair !== undefined) {
      const node = ipPair.value;
      entry.allowIp = isSeq(node)
        ? (node.items as Node[]).map((item) => str(item, `${where}.allow-ip`, ipPair))
        : [str(node, `${where}.allow-ip`, ipPair)];
    }
    const names = { basicAuth: 'basic-auth', allowIp: 'allow-ip' };
    if (authPair !== undefined) {
      wrap(authPair.value, `${where}.basic-auth`, () =>
        accessPolicy({ basicAuth: entry.basicAuth }, names),
      );
    }
    if (ipPair !== undefined) {
      wrap(ipPair.value, `${where}.allow-ip`, () =>
        accessPolicy({ allowIp: entry.allowIp }, names),
      );
    }
    const insecurePair = keys.get('origin-insecure');
    if (insecurePair !== undefined) {
      const v = insecurePair.value;
      if (!isScalar(v) || typeof v.value !== 'boolean') {
        fail(v ?? insecurePair, `${where}.origin-insecure`, 'expected true or false');
      }
      entry.originInsecure = (v as { value: boolean }).value;
    }
    const connPair = keys.get('connections');
    if (connPair !== undefined) {
      const n = Number(str(connPair.value, `${where}.connections`, connPair));
      if (!Number.isInteger(n) || n < 1 || n > 16) {
        fail(connPair.value, `${where}.connections`, 'expected a number from 1 to 16');
      }
      entry.connections = n;
    }
    const routesPair = keys.get('routes');
    if (routesPair !== undefined) {
      const seq = routesPair.value;
      if (!isSeq(seq)) {
        return fail(seq ?? routesPair, `${where}.routes`, 'expected a list of { path, target }');
      }
      (seq.items as (Node | null)[]).forEach((item, i) => {
        const at = `${where}.routes[${i}]`;
        if (!isMap(item)) return fail(item ?? seq, at, 'expected { path: /prefix, target: PORT }');
        const rk = keysOf(item, ROUTE_KEYS, at);
        const pathPair = rk.get('path');
        const rtPair = rk.get('target');
        if (pathPair === undefined)
          return fail(item, `${at}.path`, 'missing: the path prefix, e.g. /api');
        if (rtPair === undefined)
          return fail(item, `${at}.target`, 'missing: where those requests go');
        const rawPath = str(pathPair.value, `${at}.path`, pathPair);
        if (!rawPath.startsWith('/') || /[\s?#*]/.test(rawPath)) {
          fail(
            pathPair.value,
            `${at}.path`,
            `'${rawPath}' is not a path prefix: start with / and use no ?, #, * or spaces (e.g. /api)`,
          );
        }
        const prefix = normalizeRoutePath(rawPath);
        for (const earlier of entry.routes) {
          if (routeMatches(earlier.path, prefix)) {
            fail(
              pathPair.value,
              `${at}.path`,
              `this route can never match: the route for ${earlier.path} on line ${earlier.line} comes first and takes every request under ${prefix} (first match wins: list the longer path first)`,
            );
          }
        }
        const rtText = str(rtPair.value, `${at}.target`, rtPair);
        const routeTarget = wrap(rtPair.value, `${at}.target`, () => parseTarget(rtText));
        entry.routes.push({ path: prefix, target: routeTarget, line: lineOf(pathPair) });
      });
    }
    out.tunnels.push(entry);
  }
  return out;
}

function rangeStart(node: Node | Pair): number {
  if (isPair(node)) {
    const key = node.key as Node | null;
    return key?.range?.[0] ?? 0;
  }
  return node.range?.[0] ?? 0;
}
