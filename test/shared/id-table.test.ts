/**
 * IdTable: a plain keyed table, and the reason it exists: a Map that gains and loses an
 * entry per request drags the requests in flight into the old generation once a full
 * GC has run (see shared/id-table.ts). Each GC case runs in its own process.
 */
import { execFile } from 'node:child_process';
import t from 'tap';
import { IdTable } from '../../shared/id-table.js';
import { REPO_ROOT } from '../helpers/processes.js';

t.test('get, set, delete, size, values, clear', (t) => {
  const table = new IdTable<string>();
  t.equal(table.size, 0);
  table.set(3, 'c');
  table.set(1, 'a');
  table.set(3, 'C');
  t.equal(table.size, 2, 'setting an id again replaces its item');
  t.equal(table.get(3), 'C');
  t.equal(table.get(2), undefined);
  t.ok(table.has(1));
  t.same(table.values(), ['a', 'C'], 'in id order');
  for (const item of table.values()) table.delete(item === 'a' ? 1 : 3);
  t.equal(table.size, 0, 'deleting while iterating values() is safe');
  t.equal(table.delete(1), false, 'deleting a missing id');
  table.set(7, 'g');
  table.clear();
  t.equal(table.size, 0);
  t.equal(table.get(7), undefined);
  t.end();
});

// Requests of ~4 KB each, 50 in flight, one set and one delete per request; one full GC
// early on, then 250,000 more requests. Prints the full GCs that followed.
const SCRIPT = `
import { PerformanceObserver, constants } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { IdTable } from './shared/id-table.js';

const table = process.argv[1] === 'map' ? new Map() : new IdTable();
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
await churn(2500);
await sleep(20);
observer.disconnect();
process.stdout.write(String(majors - before));
`;

function fullGcsAfterChurn(kind: 'map' | 'id-table'): Promise<number> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      ['--expose-gc', '--import', 'tsx', '--input-type=module', '-e', SCRIPT, kind],
      { cwd: REPO_ROOT, timeout: 60_000 },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`${err.message}\n${stderr}`));
        else resolve(Number(stdout));
      },
    );
  });
}

t.test('churn after a full GC: no chain of promoted requests', async (t) => {
  const map = await fullGcsAfterChurn('map');
  t.ok(map >= 3, `control, a Map: ${map} full GCs followed`);
  const table = await fullGcsAfterChurn('id-table');
  t.ok(table <= 1, `IdTable: ${table} full GCs followed`);
});
