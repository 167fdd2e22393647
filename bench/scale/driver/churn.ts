/** Tunnels connecting and leaving at a fixed rate while visitors probe random live ones. */
import { RawConnection } from './http-load.js';
import { log, sleep } from './ipc.js';
import { Latencies, round, Errors, labelOf } from './stats.js';
import {
  type SimTunnel,
  type TunnelTarget,
  openTunnel,
  type CloseMode,
  endTunnel,
} from './tunnels.js';

export interface ChurnArgs extends TunnelTarget {
  ratePerS: number;
  durationS: number;
  lifetimeMs: number;
  /** Of every 10 tunnels ended, how many vanish (heartbeat path) instead of closing. */
  vanishPer10: number;
  vanishMs: number;
  /** End every tunnel this way (diagnostics); default: the mix above. */
  onlyMode?: CloseMode;
  probePort: number;
  probeConnections: number;
  maxInflight: number;
}

/**
 * Tunnels connect at `ratePerS` and each leaves after `lifetimeMs` (clean close,
 * dropped socket, or vanished in turn), while visitors probe random live tunnels.
 * Checks that no two live tunnels ever get the same hostname and that every probe
 * answered 200 comes from the tunnel asked for.
 */
export async function churn(a: ChurnArgs) {
  const started = performance.now();
  const endAt = started + a.durationS * 1000;
  const live = new Map<string, SimTunnel>();
  const everSeen = new Set<string>();
  const errors = new Errors();
  const openLat = new Latencies();
  const modes: Record<CloseMode, number> = { close: 0, terminate: 0, vanish: 0 };
  let launched = 0;
  let opened = 0;
  let inflight = 0;
  let skipped = 0;
  let collisions = 0;
  let reused = 0;
  let ended = 0;
  let churnDropped = 0;
  const timers = new Set<NodeJS.Timeout>();

  const end = (t: SimTunnel): void => {
    const slot = ended++ % 10;
    const mode: CloseMode =
      a.onlyMode ?? (slot < a.vanishPer10 ? 'vanish' : slot % 2 === 0 ? 'close' : 'terminate');
    modes[mode]++;
    live.delete(t.hostname);
    endTunnel(t, mode, a.vanishMs);
  };

  const launch = (i: number): void => {
    launched++;
    inflight++;
    const t0 = performance.now();
    openTunnel(a, i).then(
      (t) => {
        inflight--;
        opened++;
        openLat.add(performance.now() - t0);
        if (live.has(t.hostname)) collisions++;
        const label = labelOf(t.hostname);
        if (everSeen.has(label)) reused++;
        everSeen.add(label);
        live.set(t.hostname, t);
        t.session.once('close', () => {
          if (!t.closing) {
            churnDropped++;
            live.delete(t.hostname);
          }
        });
        const timer = setTimeout(() => {
          timers.delete(timer);
          if (!t.closing) end(t);
        }, a.lifetimeMs);
        timers.add(timer);
      },
      (err: unknown) => {
        inflight--;
        errors.add((err as Error).message);
      },
    );
  };

  // Visitors: random live tunnels, checking who answers.
  const probe = { ok: 0, mismatches: 0, gone: 0, errors: new Errors(), lat: new Latencies() };
  const prober = async (i: number): Promise<void> => {
    let conn: RawConnection | undefined;
    while (performance.now() < endAt) {
      const hosts = [...live.keys()];
      if (hosts.length === 0) {
        await sleep(20);
        continue;
      }
      const host = hosts[Math.floor(Math.random() * hosts.length)]!;
      try {
        if (conn === undefined || conn.closed)
          conn = await RawConnection.connect(
            a.probePort,
            a.sourceAddresses[i % a.sourceAddresses.length]!,
            10_000,
          );
        const t0 = performance.now();
        // Longer than the relay's dead-peer detection (≤ 14 s): a probe that picked a
        // tunnel just before it vanished waits for that, then gets a 502.
        const r = await conn.request(host, '/', 20_000);
        probe.lat.add(performance.now() - t0);
        if (r.status === 200) {
          if (r.body.toString('latin1') === labelOf(host)) probe.ok++;
          else probe.mismatches++;
        } else if (r.status === 404 || r.status === 502 || r.status === 503) {
          probe.gone++; // the tunnel left between the pick and the request
        } else probe.errors.add(`HTTP ${r.status}`);
      } catch (err) {
        probe.errors.add((err as Error).message);
      }
      await sleep(5);
    }
    conn?.close();
  };
  const probers = Array.from({ length: a.probeConnections }, (_, i) => prober(i));

  // Launch on a 20 ms tick so the rate holds even when a tick is late.
  let lastLog = started;
  while (performance.now() < endAt) {
    const due = Math.floor(((performance.now() - started) / 1000) * a.ratePerS);
    while (launched + skipped < due) {
      if (inflight >= a.maxInflight) skipped++;
      else launch(launched + skipped);
    }
    if (performance.now() - lastLog > 10_000) {
      lastLog = performance.now();
      log(
        `churn: ${opened} opened, ${live.size} live, ${inflight} connecting, ${errors.count} failed`,
      );
    }
    await sleep(20);
  }
  await Promise.all(probers);
  // Let the last handshakes finish (bounded), then end everything still live.
  for (let i = 0; i < 250 && inflight > 0; i++) await sleep(40);
  for (const timer of timers) clearTimeout(timer);
  for (const t of [...live.values()]) end(t);
  const ms = performance.now() - started;
  return {
    launched,
    opened,
    failed: errors.count,
    errors: errors.toJSON(),
    skipped,
    stillConnecting: inflight,
    ratePerS: round(opened / a.durationS),
    collisions,
    reusedLabels: reused,
    dropped: churnDropped,
    ends: modes,
    handshake: openLat.summary(),
    probes: {
      ok: probe.ok,
      mismatches: probe.mismatches,
      gone: probe.gone,
      errors: probe.errors.toJSON(),
      ...probe.lat.summary(),
    },
    ms: round(ms),
  };
}
