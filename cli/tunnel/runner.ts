/**
 * One tunnel, start to stop: the local origin proxies (the target and any path routes),
 * the supervisor that keeps its relay sessions, and the event stream the views read.
 * The one code path behind `quick-tunnel <target>`, `quick-tunnel start` (one runner per
 * tunnel of the config) and the library's `openTunnel()`.
 *
 * It never touches the process: no signal handlers, no exit, no output (events only).
 */
import net from 'node:net';
import { basicAuthDigest, parseCidr } from '../../shared/access.js';
import { ConfigError } from '../../shared/errors.js';
import type {
  AccessPolicy,
  TunnelAssignment,
  TunnelRequest,
} from '../../shared/protocol/tunnel.js';
import type { EventSink, TunnelEvent } from '../events.js';
import { OriginProxy, type HostHeaderMode } from '../origin/proxy.js';
import { OriginRouter, normalizeRoutePath } from '../origin/router.js';
import { LOCALHOST_ADDRESSES, type OriginTarget } from '../origin/target.js';
import type { RelayConnector } from './relay-connector.js';
import { TunnelSupervisor } from './supervisor.js';

/** A path route: requests under `path` go to `target`. */
export interface RouteSpec {
  path: string;
  target: OriginTarget;
}

/** Everything a tunnel needs, resolved and validated. */
export interface TunnelSpec {
  /** The tunnel's name in the config file: the `tunnel` field of its events. */
  tunnel?: string | undefined;
  target: OriginTarget;
  routes?: readonly RouteSpec[] | undefined;
  hostHeader: HostHeaderMode;
  originInsecure: boolean;
  /** Keep heads and body previews of each exchange (the TUI inspects and replays them). */
  capture: boolean;
  /** What the relay gets in the hello: token, named-tunnel credential, access policy. */
  request: TunnelRequest;
  relay: RelayConnector;
}

export interface RunnerHooks {
  /**
   * Every event of the tunnel, the supervisor's and the origin proxies' (with their
   * captures when `spec.capture`), tagged with `spec.tunnel` when it is set.
   */
  emit: EventSink;
}

/** `preserve` (default), `rewrite`, or any other value: the Host header the origin gets. */
export function hostHeaderMode(input: string | undefined): HostHeaderMode {
  if (input === undefined || input === 'preserve') return 'preserve';
  if (input === 'rewrite') return 'rewrite';
  return { value: input };
}

/**
 * Validates basic auth (`USER:PASS`) and allowed visitor addresses locally and builds
 * what the relay enforces. `names` says how errors name the two settings.
 */
export function accessPolicy(
  opts: { basicAuth?: string | undefined; allowIp?: readonly string[] | undefined },
  names: { basicAuth: string; allowIp: string } = {
    basicAuth: '--basic-auth',
    allowIp: '--allow-ip',
  },
): AccessPolicy | undefined {
  const policy: AccessPolicy = {};
  if (opts.basicAuth !== undefined) {
    const colon = opts.basicAuth.indexOf(':');
    if (colon <= 0 || colon === opts.basicAuth.length - 1) {
      throw new ConfigError(`${names.basicAuth} takes USER:PASS, e.g. 'demo:s3cret'`);
    }
    policy.basicAuthSha256 = basicAuthDigest(opts.basicAuth);
  }
  if (opts.allowIp !== undefined && opts.allowIp.length > 0) {
    for (const cidr of opts.allowIp) {
      try {
        parseCidr(cidr);
      } catch (err) {
        throw new ConfigError(
          `${names.allowIp}: ${(err as Error).message} (use e.g. 203.0.113.7, 10.0.0.0/8 or 2001:db8::/32)`,
        );
      }
    }
    policy.allowIps = [...opts.allowIp];
  }
  return Object.keys(policy).length === 0 ? undefined : policy;
}

/** True if something accepts TCP connections at the target (any of its addresses). */
export async function originListening(target: OriginTarget): Promise<boolean> {
  for (const host of target.localhost ? LOCALHOST_ADDRESSES : [target.hostname]) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = net.connect({ host, port: target.port });
      socket.setTimeout(1000);
      const done = (result: boolean): void => {
        socket.destroy();
        resolve(result);
      };
      socket.once('connect', () => done(true));
      socket.once('error', () => done(false));
      socket.once('timeout', () => done(false));
    });
    if (ok) return true;
  }
  return false;
}

export class TunnelRunner {
  readonly spec: TunnelSpec;
  readonly origin: OriginRouter;
  readonly supervisor: TunnelSupervisor;
  private readonly emitEvent: EventSink;
  private stopping: Promise<void> | undefined;

  constructor(spec: TunnelSpec, hooks: RunnerHooks) {
    this.spec = spec;
    const name = spec.tunnel;
    this.emitEvent =
      name === undefined ? hooks.emit : (e) => hooks.emit({ ...e, tunnel: name } as TunnelEvent);
    const emit = this.emitEvent;
    let id = 1;
    const nextId = (): number => id++;
    const proxy = (target: OriginTarget): OriginProxy =>
      new OriginProxy({
        target,
        hostHeader: spec.hostHeader,
        insecure: spec.originInsecure,
        capture: spec.capture,
        nextId,
        onEvent: emit,
      });
    this.origin = new OriginRouter(
      proxy(spec.target),
      (spec.routes ?? []).map((r) => ({
        path: normalizeRoutePath(r.path),
        proxy: proxy(r.target),
      })),
    );
    this.supervisor = new TunnelSupervisor({
      connect: (request, relay) => spec.relay.connect(request, relay),
      ...(spec.relay.relays !== undefined ? { relays: spec.relay.relays } : {}),
      request: spec.request,
      connections: spec.relay.connections,
      onStream: (stream) => this.origin.handle(stream),
      emit,
      relay: spec.relay.label,
      target: spec.target.label,
      local: spec.relay.local,
    });
  }

  emit(e: TunnelEvent): void {
    this.emitEvent(e);
  }

  /**
   * Connects; resolves with the relay's assignment once the URL works. Then warns (an
   * event) about every origin nothing listens on yet. On failure everything is released.
   */
  async start(): Promise<TunnelAssignment> {
    let assignment: TunnelAssignment;
    try {
      assignment = await this.supervisor.start();
    } catch (err) {
      await this.stop(0);
      throw err;
    }
    const targets = [this.spec.target, ...(this.spec.routes ?? []).map((r) => r.target)];
    const seen = new Set<string>();
    for (const target of targets) {
      if (seen.has(target.label)) continue;
      seen.add(target.label);
      if (!(await originListening(target))) {
        this.emitEvent({
          event: 'warning',
          message: `nothing is listening on ${target.label} yet: start your app there; visitors get a 502 page until then`,
        });
        for (const proxy of this.origin.proxies) {
          if (proxy.target.label === target.label) proxy.unreachableAlreadyWarned();
        }
      }
    }
    return assignment;
  }

  /** Resolves when the tunnel gave up for good (with why), or after stop() (undefined). */
  get done(): Promise<Error | undefined> {
    return this.supervisor.done;
  }

  /**
   * Graceful stop: the relay sends nothing new, in-flight requests get up to `graceMs`,
   * then the origin connections close and the relay is released. Idempotent.
   */
  stop(graceMs = 5_000): Promise<void> {
    this.stopping ??= (async () => {
      try {
        await this.supervisor.stop(graceMs);
      } finally {
        this.origin.close();
        await this.spec.relay.release();
      }
    })();
    return this.stopping;
  }
}
