/**
 * The V8 tuning of shared/runtime.ts, observed from outside: a child process allocates
 * like a busy tunnel (short-lived objects, up to a few hundred thousand alive at a time)
 * and reports the largest size V8's young generation reached. The flags are
 * process-wide, so each case runs in its own process, next to an untuned control that
 * shows the same load does grow the young generation.
 */
import { execFile } from 'node:child_process';
import t from 'tap';
import { CLIENT_YOUNG_CAP_BYTES, RELAY_YOUNG_CAP_BYTES } from '../../shared/runtime.js';
import { REPO_ROOT } from '../helpers/processes.js';

const SCRIPT = `
import { getHeapSpaceStatistics } from 'node:v8';
import { setTimeout as sleep } from 'node:timers/promises';
import { tuneGarbageCollector } from './shared/runtime.js';
import { generateCertificate } from './relay/edge/certificate.js';

const [role, load, worker] = process.argv.slice(1);
if (role !== 'untuned') tuneGarbageCollector(role);
// The relay generates its certificate in a Worker, and starting one resets runtime flags.
if (worker === 'worker') await generateCertificate('runtime.test');
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

function youngGenerationBytes(
  role: string,
  load: 'burst' | 'steady',
  worker = '',
): Promise<number> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', '--input-type=module', '-e', SCRIPT, role, load, worker],
      { cwd: REPO_ROOT, timeout: 60_000 },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`${err.message}\n${stderr}`));
        else resolve(Number(stdout));
      },
    );
  });
}

const MiB = 2 ** 20;
const mib = (bytes: number): string => `${(bytes / MiB).toFixed(1)} MiB`;

t.test('client: the young generation keeps its initial size', async (t) => {
  const control = await youngGenerationBytes('untuned', 'burst');
  t.ok(control > 8 * MiB, `untuned control grows to ${mib(control)}`);
  const tuned = await youngGenerationBytes('client', 'burst');
  t.ok(tuned <= CLIENT_YOUNG_CAP_BYTES, `tuned: ${mib(tuned)}`);
});

t.test('relay: the young generation grows up to the cap and no further', async (t) => {
  const control = await youngGenerationBytes('untuned', 'steady');
  t.ok(control > RELAY_YOUNG_CAP_BYTES, `untuned control grows to ${mib(control)}`);
  const tuned = await youngGenerationBytes('relay', 'steady');
  t.ok(tuned <= RELAY_YOUNG_CAP_BYTES, `tuned: ${mib(tuned)}`);
  t.ok(tuned > 4 * MiB, `it may still grow under load (${mib(tuned)})`);
});

t.test('the tuning survives the certificate worker, which resets V8 flags', async (t) => {
  const client = await youngGenerationBytes('client', 'burst', 'worker');
  t.ok(client <= 8 * MiB, `client: ${mib(client)}`);
  const relay = await youngGenerationBytes('relay', 'steady', 'worker');
  t.ok(relay <= RELAY_YOUNG_CAP_BYTES, `relay: ${mib(relay)}`);
});
