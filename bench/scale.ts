/**
 * Scale on one relay (issue 8): how the relay's cost grows with tunnels, visitor
 * connections and time. Each case starts its own relay process (the compiled dist/, as
 * users run it) with simulated clients in other processes (bench/scale-driver.ts):
 *
 * - idle-tunnels / idle-tunnels-tls: N idle ephemeral tunnels over ws:// or wss://:
 *   relay RSS per tunnel, time to register them all, heartbeat CPU, and p99 of requests
 *   to random tunnels. Target < 20 KiB per idle tunnel (plain; TLS is reported apart).
 * - many-visitors: N concurrent keep-alive visitor connections over M tunnels.
 * - churn: tunnels connecting and leaving at a fixed rate: RSS and fds back to baseline,
 *   no hostname collision, no request answered by the wrong tunnel.
 * - soak: mixed traffic through the real CLI for minutes: RSS slope of relay and CLI,
 *   and the slope of their live heap after each full GC (--trace-gc), RSS's noise aside.
 * - ws-fanout: visitor WebSockets on one tunnel (real CLI + origin) echoing.
 *
 * Counts and durations are parameters (`--tunnels 50 --churn-s 2 …`), so CI runs a
 * tiny version (test/bench/scale-smoke.test.ts) through the same code.
 *
 * One file per case in bench/scale/ (common.ts: the harness and what the cases share);
 * the driver's parts are in bench/scale/driver/. Load helpers used by every benchmark
 * (processes, sampling, statistics): bench/scale-support.ts.
 */
import type { BenchCase } from './run.js';
import { churnBench } from './scale/churn.js';
import { idleTunnelsBench, idleTunnelsTlsBench } from './scale/idle-tunnels.js';
import { manyVisitorsBench } from './scale/many-visitors.js';
import { soakBench } from './scale/soak.js';
import { wsFanoutBench } from './scale/ws-fanout.js';

export {
  churnBench,
  idleTunnelsBench,
  idleTunnelsTlsBench,
  manyVisitorsBench,
  soakBench,
  wsFanoutBench,
};

/** All scale cases, in the order `npm run bench` runs them. */
export const scaleBenches: readonly BenchCase[] = [
  idleTunnelsBench,
  idleTunnelsTlsBench,
  manyVisitorsBench,
  churnBench,
  wsFanoutBench,
  soakBench,
];
