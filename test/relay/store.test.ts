/**
 * The named-tunnel store: records survive a reopen, writes are atomic (a crash in the
 * middle of one leaves the old or the new state), broken files give clear errors.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import {
  JsonFileTunnelStore,
  MemoryTunnelStore,
  NameTakenError,
  STORE_FILE,
  StoreError,
  type TunnelRecord,
} from '../../relay/tunnels/store.js';
import { tempDir } from '../helpers/relay-env.js';
import { REPO_ROOT } from '../helpers/processes.js';

const record = (name: string, extra: Partial<TunnelRecord> = {}): TunnelRecord => ({
  id: `${name}-id`,
  name,
  credentialHash: `sha256:${'cd'.repeat(32)}`,
  createdAt: '2025-01-01T00:00:00.000Z',
  lastSeenAt: null,
  ...extra,
});

t.test('create, get, list, touch, delete; all of it survives a reopen', async (t) => {
  const dir = await tempDir(t);
  const store = await JsonFileTunnelStore.open(dir);
  t.same(await store.list(), [], 'a missing file is an empty store');
  await store.create(record('web'));
  await store.create(record('api-2'));
  await t.rejects(store.create(record('web')), NameTakenError, 'a taken name is refused');
  await store.touch('web', new Date('2025-02-03T04:05:06.000Z'));
  await store.touch('nobody', new Date()); // unknown names are ignored
  t.equal((await store.get('web'))?.lastSeenAt, '2025-02-03T04:05:06.000Z');
  t.equal(await store.delete('api-2'), true);
  t.equal(await store.delete('api-2'), false, 'deleting twice: false');
  await store.close();

  const file = path.join(dir, STORE_FILE);
  t.equal((await stat(file)).mode & 0o777, 0o600, 'the store file is private');
  const again = await JsonFileTunnelStore.open(dir);
  t.same(
    (await again.list()).map((r) => [r.name, r.lastSeenAt]),
    [['web', '2025-02-03T04:05:06.000Z']],
  );
  t.same(await again.get('api-2'), undefined);
});

t.test('concurrent mutations are coalesced and all durable', async (t) => {
  const dir = await tempDir(t);
  const store = await JsonFileTunnelStore.open(dir);
  await Promise.all(Array.from({ length: 200 }, (_, i) => store.create(record(`n-${i}`))));
  await Promise.all([store.touch('n-1', new Date(0)), store.delete('n-2'), store.delete('n-3')]);
  const reopened = await JsonFileTunnelStore.open(dir);
  t.equal((await reopened.list()).length, 198);
  t.equal((await reopened.get('n-1'))?.lastSeenAt, new Date(0).toISOString());
  t.same(
    (await readdir(dir)).filter((f) => f.endsWith('.tmp')),
    [],
    'no temp file left behind',
  );
});

t.test('a failed write is reported and rolled back in memory', async (t) => {
  const dir = await tempDir(t);
  const store = await JsonFileTunnelStore.open(dir);
  await store.create(record('kept'));
  await rm(dir, { recursive: true, force: true }); // the next write cannot happen
  await t.rejects(store.create(record('lost')), StoreError);
  t.equal(await store.get('lost'), undefined, 'the failed create is not visible');
  await t.rejects(store.delete('kept'), StoreError);
  t.ok(await store.get('kept'), 'the failed delete is undone');
});

t.test('simulated crash mid-write: a partial temp file is ignored and removed', async (t) => {
  const dir = await tempDir(t);
  const store = await JsonFileTunnelStore.open(dir);
  await store.create(record('before-crash'));
  await store.close();
  // A writer died after writing half of its temp file, before the rename.
  const full = await readFile(path.join(dir, STORE_FILE), 'utf8');
  const partial = path.join(dir, `${STORE_FILE}.99999.1.tmp`);
  await writeFile(partial, full.slice(0, Math.floor(full.length / 2)));
  const reopened = await JsonFileTunnelStore.open(dir);
  t.same(
    (await reopened.list()).map((r) => r.name),
    ['before-crash'],
    'the last complete state loads',
  );
  t.same(
    (await readdir(dir)).filter((f) => f.endsWith('.tmp')),
    [],
    'the stale temp file is removed',
  );
});

t.test('real crash: SIGKILL a writer at random moments, the store always loads', async (t) => {
  const dir = await tempDir(t);
  const writer = fileURLToPath(new URL('./fixtures/store-writer.ts', import.meta.url));
  const runs = 10;
  const acked = new Set<string>();
  let tempFilesFound = 0;
  for (let run = 0; run < runs; run++) {
    const child = spawn(process.execPath, ['--import', 'tsx', writer, dir, String(run)], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const exited = once(child, 'exit');
    t.teardown(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    // Kill after a random number of acknowledged writes, at a random point of the
    // next one (a write of this store takes a few ms: serialise, write, fsync, rename).
    const killAfter = 1 + Math.floor(Math.random() * 30);
    let n = 0;
    const lines = createInterface({ input: child.stdout! });
    await new Promise<void>((resolve) => {
      lines.on('line', (line) => {
        if (!line.startsWith('acked ')) return;
        acked.add(line.slice(6));
        if (++n === killAfter) {
          setTimeout(() => {
            child.kill('SIGKILL');
            resolve();
          }, Math.random() * 8);
        }
      });
    });
    await exited;
    lines.close();
    tempFilesFound += (await readdir(dir)).filter((f) => f.endsWith('.tmp')).length;

    const store = await JsonFileTunnelStore.open(dir); // throws if the file were broken
    const names = new Set((await store.list()).map((r) => r.name));
    const missing = [...acked].filter((name) => !names.has(name));
    t.same(missing, [], `run ${run}: every acknowledged write survived the kill`);
    JSON.parse(await readFile(path.join(dir, STORE_FILE), 'utf8'));
  }
  // Not asserted (timing-dependent), but typically most kills land mid-write.
  t.comment(`${tempFilesFound} of ${runs} kills interrupted a write (temp file left behind)`);
  t.ok(acked.size >= runs, 'the writer made progress');
});

t.test('broken or foreign store files give clear errors', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, STORE_FILE);
  await writeFile(file, '{"version": 1, "tunnels": [');
  await t.rejects(JsonFileTunnelStore.open(dir), {
    code: 'QT_ERR_STORE',
    message: /tunnels\.json is not valid JSON/,
  });
  await writeFile(file, '{"version": 9, "tunnels": []}');
  await t.rejects(JsonFileTunnelStore.open(dir), { message: /newer relay/ });
  await writeFile(file, '{"version": 1, "tunnels": [{"name": "x"}]}');
  await t.rejects(JsonFileTunnelStore.open(dir), { message: /invalid record/ });
  await writeFile(file, '[]');
  await t.rejects(JsonFileTunnelStore.open(dir), { message: /not a quick-tunnel store/ });
});

t.test('the memory store has the same behaviour without a file', async (t) => {
  const store = new MemoryTunnelStore();
  await store.create(record('abc'));
  await t.rejects(store.create(record('abc')), NameTakenError);
  await store.touch('abc', new Date(5));
  t.equal((await store.get('abc'))?.lastSeenAt, new Date(5).toISOString());
  t.equal(await store.delete('abc'), true);
  t.same(await store.list(), []);
  await store.close();
});
