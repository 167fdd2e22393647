/**
 * The V8 tuning of shared/runtime.ts, observed from outside: a child process allocates
 * like a busy tunnel (short-lived objects, a few hundred thousand alive at a time) and
 * reports how large V8's young generation grew. The flags are process-wide, so each
 * case runs in its own process.
 */
import { execFile } from 'node:child_process';
import t from 'tap';
import { REPO_ROOT } from '../helpers/processes.js';

const SCRIPT = `
import { getHeapSpaceStatistics } from 'node:v8';
import { tuneGarbageCollector } from './shared/runtime.js';
import { generateCertificate } from './relay/edge/certificate.js';

const mode = process.argv[1];
if (mode !== 'untuned') tuneGarbageCollector();
// The relay generates its certificate in a Worker, and starting one resets runtime flags.
if (mode === 'tuned-then-worker') await generateCertificate('runtime.test');
let live = [];
for (let i = 0; i < 3e6; i++) {
  live.push({ i });
  if (live.length > 3e5) live = [];
}
const young = getHeapSpaceStatistics().find((s) => s.space_name === 'new_space');
process.stdout.write(String(young.space_size));
`;

function youngGenerationBytes(mode: string): Promise<number> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', '--input-type=module', '-e', SCRIPT, mode],
      { cwd: REPO_ROOT, timeout: 60_000 },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`${err.message}\n${stderr}`));
        else resolve(Number(stdout));
      },
    );
  });
}

const MiB = 2 ** 20;
const mib = (bytes: number): string => (bytes / MiB).toFixed(1);

t.test('without the tuning the young generation grows under this load', async (t) => {
  // The control: proves the load below is enough to grow it, so the other cases mean something.
  const bytes = await youngGenerationBytes('untuned');
  t.ok(bytes > 8 * MiB, `young generation ${mib(bytes)} MiB`);
});

t.test('tuned: the young generation keeps its initial size', async (t) => {
  const bytes = await youngGenerationBytes('tuned');
  t.ok(bytes <= 8 * MiB, `young generation ${mib(bytes)} MiB`);
});

t.test('the tuning survives the certificate worker, which resets V8 flags', async (t) => {
  const bytes = await youngGenerationBytes('tuned-then-worker');
  t.ok(bytes <= 8 * MiB, `young generation ${mib(bytes)} MiB`);
});
