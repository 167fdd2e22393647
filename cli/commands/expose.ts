/**
 * `quick-tunnel <target>`: exposes a local port through a relay (or, with no relay
 * configured, through a relay embedded in this process on 127.0.0.1).
 */
import { plainRelayWarning } from '../tunnel/client.js';
import { ConfigError } from '../../shared/errors.js';
import type { TunnelRequest } from '../../shared/protocol/tunnel.js';
import { VERSION } from '../../shared/version.js';
import {
  preferProductionReact,
  readEnvironment,
  relayProxy,
  resolveRelaySettings,
} from '../config.js';
import type { EventSink, TunnelEvent } from '../events.js';
import { parseTarget } from '../origin/target.js';
import { namedTunnelCredential } from '../tunnel/credentials.js';
import { proxyAgentFor } from '../tunnel/proxy.js';
import { embeddedRelay, remoteRelay, type RelayConnector } from '../tunnel/relay-connector.js';
import { explainRelayError } from '../tunnel/explain.js';
import { lanAddress } from '../tunnel/lan.js';
import { relayCa } from '../tunnel/pin.js';
import { TunnelRunner, accessPolicy, hostHeaderMode } from '../tunnel/runner.js';
import type { InspectorHandle } from '../inspector/server.js';
import { replayThrough } from '../inspector/replay.js';
import { errorFields, jsonErrorLine, lineView, processWriter } from '../ui/lines.js';
import type { TuiHandle } from '../ui/tui/index.js';
import { TuiStore } from '../ui/tui/store.js';

export { accessPolicy };

export interface ExposeOptions {
  target: string;
  relay: string | undefined;
  token: string | undefined;
  ca: string | undefined;
  name: string | undefined;
  log: 'text' | 'json' | undefined;
  hostHeader: string | undefined;
  originInsecure: boolean;
  relayInsecure: boolean;
  connections: number;
  color: boolean;
  /** `USER:PASS` visitors must present (enforced by the relay). */
  basicAuth?: string | undefined;
  /** Visitor addresses/CIDRs allowed (enforced by the relay). */
  allowIp?: string[] | undefined;
  /** Pinned relay certificate (`SHA256:…`), instead of or besides `--ca`. */
  caFingerprint?: string | undefined;
  /** Embedded relay: also listen on this machine's LAN address (`--lan`). */
  lan?: boolean | undefined;
  /** The web inspector's first port to try (default 4040; 0 = any); false = --no-inspect. */
  inspect?: number | false | undefined;
}

export async function runExpose(opts: ExposeOptions): Promise<number> {
  const env = readEnvironment();
  const target = parseTarget(opts.target);
  const settings = resolveRelaySettings(opts, env);
  const relayInput = settings.relay?.href;
  const { token, caFile } = settings;
  const inspect = opts.inspect ?? 4040;
  if (inspect !== false && (!Number.isInteger(inspect) || inspect < 0 || inspect > 65535)) {
    throw new ConfigError('--inspect-port must be a port number (0-65535; 0 = any free port)');
  }
  if (!Number.isInteger(opts.connections) || opts.connections < 1 || opts.connections > 16) {
    throw new ConfigError('--connections must be between 1 and 16');
  }
  // A named tunnel connects with the credential `tunnel create` stored (on a real relay).
  const named =
    opts.name === undefined
      ? undefined
      : await namedTunnelCredential(env.configDir, relayInput, opts.name);

  const request: TunnelRequest = { clientVersion: VERSION };
  if (token !== undefined) request.token = token;
  const access = accessPolicy(opts);
  if (access !== undefined) request.access = access;
  if (named !== undefined) {
    request.name = named.name;
    request.credential = named.credential;
  }

  let relay: RelayConnector;
  if (relayInput === undefined) {
    relay = await embeddedRelay({
      lanHost: opts.lan === true ? lanAddress(env.lanAddress) : undefined,
    });
  } else {
    if (opts.lan === true) {
      throw new ConfigError('--lan is for the embedded local relay, not with a relay server', {
        hint: `the URL ${relayInput} gives already works for anyone who can reach that relay; drop --lan`,
      });
    }
    // Several relays of one cluster (--relay A,B): the connections spread over them.
    const relayUrl = settings.relay!;
    const more = settings.moreRelays ?? [];
    const plain = plainRelayWarning(relayUrl);
    if (plain !== undefined) process.stderr.write(`${plain}\n`);
    const proxy = relayProxy(relayUrl);
    if (proxy !== undefined)
      process.stderr.write(`using the proxy ${proxy.host} to reach the relay\n`);
    relay = remoteRelay({
      relay: relayUrl,
      ca: await relayCa(settings, relayUrl, proxy).catch((err: unknown) => {
        throw explainRelayError(err, settings);
      }),
      insecure: opts.relayInsecure,
      agent: await proxyAgentFor(proxy, relayUrl),
      connections: opts.connections,
      more,
      agentFor: (url) => proxyAgentFor(relayProxy(url), url),
    });
    if (opts.relayInsecure) {
      process.stderr.write(
        "warning: --relay-insecure: the relay's certificate is NOT verified; anyone on the network path can read and change this tunnel's traffic.\n",
      );
    }
  }

  // Views: the Ink TUI on an interactive terminal, lines with --log or otherwise.
  const useTui =
    opts.log === undefined &&
    process.stdout.isTTY === true &&
    process.stdin.isTTY === true &&
    !env.ci;
  const lines = useTui ? undefined : lineView(opts.log ?? 'text');
  let tui: TuiHandle | undefined;
  let inspector: InspectorHandle | undefined;
  // One capture store for the TUI and the web inspector: two views of the same data.
  let runnerRef: TunnelRunner | undefined;
  const store =
    useTui || inspect !== false
      ? new TuiStore({
          source: {
            liveConnections: () => runnerRef?.supervisor.liveConnections ?? 0,
            rttMs: () => runnerRef?.supervisor.rttMs,
          },
        })
      : undefined;
  const emit: EventSink = (event) => {
    let e = withLocalUrls(event, relay);
    if (e.event === 'ready' && inspector !== undefined) e = { ...e, inspector: inspector.url };
    store?.onEvent(e);
    lines?.(e);
  };

  const runner = new TunnelRunner(
    {
      target,
      hostHeader: hostHeaderMode(opts.hostHeader),
      originInsecure: opts.originInsecure,
      // The TUI and the inspector show and replay requests: they need heads and bodies.
      capture: store !== undefined,
      request,
      relay,
    },
    { emit },
  );
  runnerRef = runner;
  const supervisor = runner.supervisor;

  const cleanup = async (): Promise<void> => {
    await runner.stop(5_000);
    await tui?.close();
    await inspector?.close();
  };

  if (store !== undefined && inspect !== false) {
    const { startInspector } = await import('../inspector/server.js');
    try {
      inspector = await startInspector({
        tunnels: [{ store, name: named?.name, replay: replayThrough(runner) }],
        port: inspect,
        caFile,
      });
    } catch (err) {
      await runner.stop(0);
      throw err;
    }
  }

  // q / Ctrl-C in the TUI: before the tunnel is online, stop connecting; after, the
  // same path as SIGINT (set below).
  let quitEarly = false;
  let quit = (): void => {
    quitEarly = true;
    supervisor.stop(0).catch(() => {});
  };
  if (useTui) {
    // Loaded only here: Ink takes ~400 ms to import.
    preferProductionReact();
    const { startTui } = await import('../ui/tui/index.js');
    tui = startTui({
      color: opts.color && !env.noColor,
      relay: relay.label,
      target: target.label,
      source: { liveConnections: () => supervisor.liveConnections, rttMs: () => supervisor.rttMs },
      origin: runner.origin.fallback,
      caFile,
      ...(store !== undefined ? { store } : {}),
      onQuit: () => quit(),
    });
  }

  try {
    await runner.start();
  } catch (err) {
    await cleanup();
    if (quitEarly) return 0;
    throw explainRelayError(err, settings);
  }
  if (quitEarly) {
    await cleanup();
    return 0;
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
    runner.done.then(
      (err) => {
        if (err !== undefined && !stopping) {
          const explained = explainRelayError(err, settings);
          const { code, message, hint } = errorFields(explained);
          // --log json: the same `error` event as an error that ends startup (cli/main.ts).
          if (opts.log === 'json') processWriter.out(jsonErrorLine(code, message, hint));
          // With the TUI, after it gave the terminal back (so the message stays visible).
          const report = (): void =>
            void process.stderr.write(
              `error: ${message}\n${hint === undefined ? '' : `hint: ${hint}\n`}`,
            );
          if (tui === undefined) report();
          else void tui.close().then(report);
          stop(1);
        }
      },
      () => stop(1),
    );
  });
}

/**
 * The embedded relay serves this command's one tunnel at http://127.0.0.1:PORT too (and
 * on the LAN address with --lan): `ready` carries those URLs.
 */
function withLocalUrls(e: TunnelEvent, relay: RelayConnector): TunnelEvent {
  if (e.event !== 'ready' || relay.directUrl === undefined) return e;
  const out: TunnelEvent = { ...e, urls: [...e.urls, relay.directUrl], directUrl: relay.directUrl };
  if (relay.lanUrl !== undefined) out.lanUrl = relay.lanUrl;
  return out;
}
