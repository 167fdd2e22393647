/**
 * The QT_ERR_* table (shared/errors.ts): every code the sources name is in it, and the
 * errors carry their code.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import {
  ConfigError,
  ConnectionError,
  QtErrorCode,
  QuickTunnelError,
  isQtErrorCode,
} from '../../shared/errors.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...sources(full));
    else if (/\.tsx?$/.test(entry.name)) out.push(full);
  }
  return out;
}

t.test('the table: keys match their codes, no duplicates', async (t) => {
  const entries = Object.entries(QtErrorCode);
  t.ok(entries.length > 40);
  for (const [key, code] of entries) t.equal(code, `QT_ERR_${key}`);
  t.equal(new Set(Object.values(QtErrorCode)).size, entries.length);
});

t.test('every QT_ERR_ code named in cli/, relay/ and shared/ is in the table', async (t) => {
  const named = new Set<string>();
  for (const dir of ['cli', 'relay', 'shared']) {
    for (const file of sources(path.join(root, dir))) {
      // `QT_ERR_ACME_${string}` and prose like `QT_ERR_*` are patterns, not codes.
      for (const m of readFileSync(file, 'utf8').matchAll(/QT_ERR_[A-Z0-9_]*[A-Z0-9]\b(?![$*])/g)) {
        named.add(m[0]);
      }
    }
  }
  t.ok(named.size > 40, `${named.size} codes found`);
  t.same(
    [...named].filter((code) => !isQtErrorCode(code)),
    [],
    'add a missing code to QtErrorCode',
  );
});

t.test('errors carry their code; isQtErrorCode tells wire codes apart', async (t) => {
  t.equal(new ConfigError('x').code, 'QT_ERR_CONFIG');
  t.equal(new ConnectionError('x', { code: 'QT_ERR_HEARTBEAT' }).code, 'QT_ERR_HEARTBEAT');
  t.ok(new ConfigError('x') instanceof QuickTunnelError);
  t.ok(isQtErrorCode('QT_ERR_AUTH'));
  t.notOk(isQtErrorCode('QT_ERR_FROM_THE_FUTURE'));
  t.notOk(isQtErrorCode('FST_ERR_VALIDATION'));
});
