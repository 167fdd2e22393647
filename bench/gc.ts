/**
 * `npm run bench -- gc`: what two garbage-collector choices buy, measured in child
 * processes (V8 flags are process-wide, and each case needs a fresh heap). These were
 * unit tests until issue 17: V8's heuristics are not a contract, so they are figures to
 * watch, not pass/fail checks in the suite.
 *
 * - IdTable (shared/id-table.ts): ~4 KB requests, 50 in flight, one set and one delete per
 *   request; one full GC early on, then `--churn-rounds` × 100 more requests. A Map that
 *   gains and loses an entry per request drags the requests in flight into the old
 *   generation after that first full GC, so more full GCs follow; the IdTable should see
 *   none or one. Reported: full GCs after the churn, Map (control) vs IdTable.
 * - Young generation cap (shared/runtime.ts): a child allocates like a busy tunnel
 *   (short-lived objects, up to a few hundred thousand alive) and reports the largest size
 *   V8's young generation reached, untuned (control) vs tuned as the CLI (one synchronous
 *   burst) and as the relay (~1.5 s of steady load, the event loop turning), and once more
 *   after starting the certificate Worker, which resets runtime-set V8 flags.
 *
 * The expectation of each figure is printed next to it; a figure off its expectation is
 * reported (`ok: false` in the JSON line), not thrown, and the case still succeeds.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { CLIENT_YOUNG_CAP_BYTES, RELAY_YOUNG_CAP_BYTES } from '../shared/runtime.js';
import type { ParamSpec } from './params.js';
import type { BenchCase } from './run.js';

const PARAMS = {
  'churn-rounds': {
    default: '2500',
    help: 'rounds of 100 requests after the full GC (IdTable vs Map)',
  },
} satisfies Record<string, ParamSpec>;

const REPO_ROOT = fileURLToPath(new URL('../', import.meta.url));
const MiB = 2 ** 20;
const mib = (bytes: number): string => `${(bytes / MiB).toFixed(1)} MiB`;

const ID_TABLE_SCRIPT = `
import { PerformanceObserver, constants } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { IdTable } from './shared/id-table.js';

const [kind, rounds] = process.argv.slice(1);
const table = kind === 'map' ? new Map() : new IdTable();
let majors = 0;
const observer = new PerformanceObserver((list) => {
  for (const e of list.getEntries()) if (e.detail.kind === constants.NODE_PERFORMANCE_GC_MAJOR) majors++;
});
observer.observe({ entryTypes: ['gc'] });
const inflight = [];
let id = 1;
const churn = async (rounds) => {
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < 100; i++) {
      table.set(id, { id, body: new Array(60).fill(id), head: { path: '/x/' + id } });
      inflight.push(id);
      id += 2;
      if (inflight.length > 50) table.delete(inflight.shift());
    }
    await sleep(1);
  }
};
await churn(100);
globalThis.gc();
await sleep(20);
const before = majors;
await churn(Number(rounds));
await sleep(20);
observer.disconnect();
process.stdout.write(String(majors - before));
`;

const YOUNG_SCRIPT = `
import { getHeapSpaceStatistics } from 'node:v8';
import { setTimeout as sleep } from 'node:timers/promises';
import { tuneGarbageCollector } from './shared/runtime.js';
import { generateCertificate } from './relay/edge/certificate.js';

const [role, load, worker] = process.argv.slice(1);
if (role !== 'untuned') tuneGarbageCollector(role);
// The relay generates its certificate in a Worker, and starting one resets runtime flags.
if (worker === 'worker') await generateCertificate('bench-gc');
const young = () => getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size;
let live = [];
let max = 0;
if (load === 'burst') {
  // One synchronous burst: no timer runs in between.
  for (let i = 0; i < 3e6; i++) {
    live.push({ i });
    if (live.length > 3e5) live = [];
  }
  max = young();
} else {
  // Steady load for ~1.5 s, the event loop turning as in a server.
  for (let round = 0; round < 300; round++) {
    for (let i = 0; i < 1e4; i++) {
      live.push({ i, round });
      if (live.length > 1e5) live = [];
    }
    max = Math.max(max, young());
    await sleep(5);
  }
}
process.stdout.write(String(max));
`;

/** Runs `script` (ESM, from the repository root) in a fresh node and returns its number. */
function measure(script: string, args: string[], nodeFlags: string[] = []): Promise<number> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [...nodeFlags, '--import', 'tsx', '--input-type=module', '-e', script, ...args],
      { cwd: REPO_ROOT, timeout: 120_000 },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`${err.message}\n${stderr}`));
        else resolve(Number(stdout));
      },
    );
  });
}

interface Figure {
  name: string;
  value: number;
  shown: string;
  expect: string;
  ok: boolean;
}

export const gcBench: BenchCase = {
  name: 'gc',
  description:
    'garbage-collector figures: full GCs after churn (IdTable vs Map), young generation size (tuned vs untuned)',
  params: PARAMS,
  async run(params, log) {
    const rounds = params.number('churn-rounds', PARAMS['churn-rounds']);
    const figures: Figure[] = [];
    const report = (
      name: string,
      value: number,
      shown: string,
      expect: string,
      ok: boolean,
    ): void => {
      figures.push({ name, value, shown, expect, ok });
      log(`${name}: ${shown} (expected ${expect})${ok ? '' : '  <-- off expectation'}`);
    };

    const idTable = (kind: string): Promise<number> =>
      measure(ID_TABLE_SCRIPT, [kind, String(rounds)], ['--expose-gc']);
    const map = await idTable('map');
    report('full GCs after churn, Map (control)', map, String(map), '>= 3', map >= 3);
    const table = await idTable('id-table');
    report('full GCs after churn, IdTable', table, String(table), '<= 1', table <= 1);

    const young = (role: string, load: string, worker = ''): Promise<number> =>
      measure(YOUNG_SCRIPT, [role, load, worker]);
    const burst = await young('untuned', 'burst');
    report('young generation, untuned burst', burst, mib(burst), '> 8 MiB', burst > 8 * MiB);
    const client = await young('client', 'burst');
    report(
      'young generation, client burst',
      client,
      mib(client),
      `<= ${mib(CLIENT_YOUNG_CAP_BYTES)}`,
      client <= CLIENT_YOUNG_CAP_BYTES,
    );
    const steady = await young('untuned', 'steady');
    report(
      'young generation, untuned steady',
      steady,
      mib(steady),
      `> ${mib(RELAY_YOUNG_CAP_BYTES)}`,
      steady > RELAY_YOUNG_CAP_BYTES,
    );
    const relay = await young('relay', 'steady');
    report(
      'young generation, relay steady',
      relay,
      mib(relay),
      `4 MiB < x <= ${mib(RELAY_YOUNG_CAP_BYTES)}`,
      relay > 4 * MiB && relay <= RELAY_YOUNG_CAP_BYTES,
    );
    const clientWorker = await young('client', 'burst', 'worker');
    report(
      'young generation, client burst after a Worker',
      clientWorker,
      mib(clientWorker),
      '<= 8 MiB',
      clientWorker <= 8 * MiB,
    );
    const relayWorker = await young('relay', 'steady', 'worker');
    report(
      'young generation, relay steady after a Worker',
      relayWorker,
      mib(relayWorker),
      `<= ${mib(RELAY_YOUNG_CAP_BYTES)}`,
      relayWorker <= RELAY_YOUNG_CAP_BYTES,
    );
    return {
      churnRounds: rounds,
      ok: figures.every((f) => f.ok),
      figures: figures.map(({ name, value, expect, ok }) => ({ name, value, expect, ok })),
    };
  },
};
