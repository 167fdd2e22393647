/**
 * IdTable: a plain keyed table. The reason it exists (a Map that gains and loses an entry
 * per request drags the requests in flight into the old generation once a full GC has run,
 * see shared/id-table.ts) is garbage-collector behaviour: `npm run bench -- gc` measures it.
 */
import t from 'tap';
import { IdTable } from '../../shared/id-table.js';

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
