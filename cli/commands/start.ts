/**
 * `quick-tunnel start [NAME…] [--all] [--config FILE]`: the tunnels of quick-tunnel.yml,
 * all in this process, and `quick-tunnel config check`, which validates the file
 * without connecting.
 *
 * Each tunnel is its own TunnelRunner with its own relay session(s) (one per tunnel,
 * `connections` for HA), all to the same relay: the protocol stays one hostname per
 * session, so a config runs against any relay, and a tunnel that the relay refuses or
 * drops affects no other. Every event carries the tunnel's name (`tunnel`).
 */
import { ConfigError, QuickTunnelError } from '../../shared/errors.js';
import type { TunnelRequest } from '../../shared/protocol/tunnel.js';
import { VERSION } from '../../shared/version.js';
import {
  parseRelayUrl,
  preferProductionReact,
  readCaFile,
  readConfigFile,
  readEnvironment,
  relayProxy,
} from '../config.js';
import type { EventSink, TunnelEvent } from '../events.js';
import { normalizeFingerprint, plainRelayWarning } from '../tunnel/client.js';
import { namedTunnelCredential } from '../tunnel/credentials.js';
import { proxyAgentFor } from '../tunnel/proxy.js';
import { embeddedRelay, remoteRelay, type RelayConnector } from '../tunnel/relay-connector.js';
import { TunnelRunner, accessPolicy, hostHeaderMode } from '../tunnel/runner.js';
import type { InspectorHandle } from '../inspector/server.js';
import { replayThrough } from '../inspector/replay.js';
import { TuiStore } from '../ui/tui/store.js';
import {
  findTunnelsConfig,
  loadTunnelsConfig,
  type TunnelConfig,
  type TunnelsConfig,
} from '../tunnels-config.js';
import { lineView, processWriter, type LineWriter } from '../ui/lines.js';
import type { MultiTuiHandle } from '../ui/tui/multi.js';

export interface StartOptions {
  names: string[];
  all: boolean;
  config: string | undefined;
  relay: string | undefined;
  token: string | undefined;
  ca: string | undefined;
  log: 'text' | 'json' | undefined;
  relayInsecure: boolean;
  color: boolean;
  /** The web inspector's first port to try (default 4040; 0 = any); false = --no-inspect. */
  inspect?: number | false | undefined;
}

/** The tunnels `start` runs: the named ones (in the order given), else all. */
export function selectTunnels(
  config: TunnelsConfig,
  names: string[],
  all: boolean,
): TunnelConfig[] {
  if (all && names.length > 0) {
    throw new ConfigError('give tunnel names or --all, not both');
  }
  if (names.length === 0) return config.tunnels;
  const byKey = new Map(config.tunnels.map((t) => [t.key, t]));
  const out: TunnelConfig[] = [];
  for (const name of new Set(names)) {
    const tunnel = byKey.get(name);
    if (tunnel === undefined) {
      throw new ConfigError(`no tunnel '${name}' in ${config.file}`, {
        hint: `its tunnels: ${config.tunnels.map((t) => t.key).join(', ')}`,
      });
    }
    out.push(tunnel);
  }
  return out;
}

/** Text lines get a `[name] ` prefix per tunnel; JSON lines carry `tunnel`. */
function multiLineView(format: 'text' | 'json', writer: LineWriter = processWriter): EventSink {
  if (format === 'json') return lineView('json', writer);
  const views = new Map<string, EventSink>();
  return (e) => {
    const name = e.tunnel ?? '';
    let view = views.get(name);
    if (view === undefined) {
      const prefix = name === '' ? '' : `[${name}] `;
      view = lineView('text', {
        out: (line) => writer.out(prefix + line),
        err: (line) => writer.err(prefix + line),
      });
      views.set(name, view);
    }
    view(e);
  };
}

/** `quick-tunnel config check`: validates, prints what would run, connects nothing. */
export function runConfigCheck(
  opts: { config: string | undefined },
  io: LineWriter = processWriter,
): number {
  const env = readEnvironment();
  const file = findTunnelsConfig(opts.config, process.cwd(), env.configDir);
  const config = loadTunnelsConfig(file);
  io.out(`${file}: OK, ${config.tunnels.length} tunnel(s)`);
  for (const t of config.tunnels) {
    const kind = t.name === undefined ? 'ephemeral' : `named ${t.name}`;
    io.out(`  ${t.key}: ${t.target.label} (${kind})`);
    for (const r of t.routes) io.out(`    ${r.path} -> ${r.target.label}`);
  }
  return 0;
}

export async function runStart(opts: StartOptions): Promise<number> {
  const env = readEnvironment();
  const file = findTunnelsConfig(opts.config, process.cwd(), env.configDir);
  const config = loadTunnelsConfig(file);
  const selected = selectTunnels(config, opts.names, opts.all);
  const saved = readConfigFile(env.configDir);

  // Flags < environment < quick-tunnel.yml < the saved login. A token or CA saved for
  // another relay never goes to the one the config names.
  const ymlRelay =
    opts.relay === undefined && env.relay === undefined && config.relay !== undefined;
  const relayInput = opts.relay ?? env.relay ?? config.relay ?? saved.relay;
  const token =
    opts.token ?? env.token ?? (ymlRelay ? config.token : (config.token ?? saved.token));
  const caFile = opts.ca ?? (ymlRelay ? config.ca : (config.ca ?? saved.ca));
  // `ca-fingerprint` in the file, else the one `login --ca-fingerprint` saved (same rule).
  const savedFingerprint =
    saved.caFingerprint === undefined ? undefined : normalizeFingerprint(saved.caFingerprint);
  const fingerprint = ymlRelay ? config.caFingerprint : (config.caFingerprint ?? savedFingerprint);
  const ca = await readCaFile(caFile);

  const useTui =
    opts.log === undefined &&
    process.stdout.isTTY === true &&
    process.stdin.isTTY === true &&
    !env.ci;
  const inspect = opts.inspect ?? 4040;
  if (inspect !== false && (!Number.isInteger(inspect) || inspect < 0 || inspect > 65535)) {
    throw new ConfigError('--inspect-port must be a port number (0-65535; 0 = any free port)');
  }
  const lines = useTui ? undefined : multiLineView(opts.log ?? 'text');
  let tui: MultiTuiHandle | undefined;
  let inspector: InspectorHandle | undefined;
  // One capture store per tunnel, shared by the TUI and the web inspector; one key
  // counter so the inspector's request ids are unique across tunnels.
  let nextKey = 1;
  const stores = new Map<string, TuiStore>();
  const capture = useTui || inspect !== false;
  const emit: EventSink = (event: TunnelEvent) => {
    let e = event;
    if (e.event === 'ready' && inspector !== undefined) e = { ...e, inspector: inspector.url };
    stores.get(e.tunnel ?? '')?.onEvent(e);
    lines?.(e);
  };

  const connectors: RelayConnector[] = [];
  const runners: TunnelRunner[] = [];
  const stopAll = async (graceMs: number): Promise<void> => {
    await Promise.all(runners.map((r) => r.stop(graceMs)));
    await Promise.all(connectors.map((c) => c.release()));
  };
  try {
    if (relayInput !== undefined && opts.relayInsecure) {
      process.stderr.write(
        "warning: --relay-insecure: the relay's certificate is NOT verified; anyone on the network path can read and change these tunnels' traffic.\n",
      );
    }
    const relayUrl = relayInput === undefined ? undefined : parseRelayUrl(relayInput);
    const plain = relayUrl === undefined ? undefined : plainRelayWarning(relayUrl);
    if (plain !== undefined) process.stderr.write(`${plain}\n`);
    const proxy = relayUrl === undefined ? undefined : relayProxy(relayUrl);
    const agent = relayUrl === undefined ? undefined : await proxyAgentFor(proxy, relayUrl);
    for (const t of selected) {
      const request: TunnelRequest = { clientVersion: VERSION };
      if (token !== undefined) request.token = token;
      const access = accessPolicy(t, { basicAuth: 'basic-auth', allowIp: 'allow-ip' });
      if (access !== undefined) request.access = access;
      if (t.name !== undefined) {
        const named = await namedTunnelCredential(env.configDir, relayInput, t.name).catch(
          (err: unknown) => {
            throw inTunnel(t, err);
          },
        );
        request.name = named.name;
        request.credential = named.credential;
      }
      const relay =
        relayUrl === undefined
          ? await embeddedRelay()
          : remoteRelay({
              relay: relayUrl,
              ca,
              insecure: opts.relayInsecure,
              fingerprint256: fingerprint,
              agent,
              connections: t.connections ?? 2,
            });
      connectors.push(relay);
      let runner: TunnelRunner | undefined;
      const store = capture
        ? new TuiStore({
            nextKey: () => nextKey++,
            source: {
              liveConnections: () => runner?.supervisor.liveConnections ?? 0,
              rttMs: () => runner?.supervisor.rttMs,
            },
          })
        : undefined;
      if (store !== undefined) {
        store.tunnel.relay = relay.label;
        store.tunnel.target = t.target.label;
        stores.set(t.key, store);
      }
      runner = new TunnelRunner(
        {
          tunnel: t.key,
          target: t.target,
          routes: t.routes,
          hostHeader: hostHeaderMode(t.hostHeader),
          originInsecure: t.originInsecure,
          capture,
          request,
          relay,
        },
        { emit },
      );
      runners.push(runner);
    }
    if (inspect !== false) {
      const { startInspector } = await import('../inspector/server.js');
      inspector = await startInspector({
        tunnels: runners.map((r) => ({
          store: stores.get(r.spec.tunnel ?? '')!,
          name: r.spec.tunnel,
          replay: replayThrough(r),
        })),
        port: inspect,
        caFile,
      });
    }
  } catch (err) {
    await stopAll(0);
    throw err;
  }

  let quitEarly = false;
  let quit = (): void => {
    quitEarly = true;
    for (const r of runners) r.supervisor.stop(0).catch(() => {});
  };
  if (useTui) {
    preferProductionReact();
    const { startMultiTui } = await import('../ui/tui/multi.js');
    tui = startMultiTui({
      color: opts.color && !env.noColor,
      tunnels: runners.map((r) => ({
        name: r.spec.tunnel ?? '',
        relay: r.spec.relay.label,
        target: r.spec.target.label,
        runner: r,
        store: stores.get(r.spec.tunnel ?? ''),
      })),
      onQuit: () => quit(),
    });
  }
  const cleanup = async (): Promise<void> => {
    await stopAll(5_000);
    await tui?.close();
    await inspector?.close();
  };

  const started = await Promise.allSettled(runners.map((r) => r.start()));
  const failed = started.findIndex((s) => s.status === 'rejected');
  if (failed !== -1 || quitEarly) {
    await cleanup();
    if (quitEarly) return 0;
    const reason = (started[failed] as PromiseRejectedResult).reason;
    throw inTunnel(selected[failed]!, reason);
  }

  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (code: number): void => {
      if (stopping) {
        resolve(130);
        return;
      }
      stopping = true;
      cleanup().then(
        () => resolve(code),
        () => resolve(1),
      );
    };
    process.on('SIGINT', () => stop(0));
    process.on('SIGTERM', () => stop(0));
    quit = () => stop(0);
    runners.forEach((runner, i) => {
      runner.done.then(
        (err) => {
          if (err === undefined || stopping) return;
          // One tunnel refused for good (token revoked, name deleted): stop them all,
          // so the failure is seen rather than one tunnel silently missing.
          const report = (): void =>
            void process.stderr.write(`error: tunnel ${selected[i]!.key}: ${err.message}\n`);
          if (tui === undefined) report();
          else void tui.close().then(report);
          stop(1);
        },
        () => stop(1),
      );
    });
  });
}

/** Names the tunnel in an error (its code, hint and cause kept). */
function inTunnel(t: TunnelConfig, err: unknown): QuickTunnelError {
  if (err instanceof QuickTunnelError) {
    return new QuickTunnelError(err.code, `tunnel ${t.key}: ${err.message}`, {
      cause: err,
      retryable: err.retryable,
      hint: err.hint,
    });
  }
  return new QuickTunnelError('QT_ERR_TUNNEL', `tunnel ${t.key}: ${String(err)}`, { cause: err });
}
