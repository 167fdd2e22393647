/**
 * Configuration reads the environment in the config modules only (issue 17 §3):
 * readEnvironment() (cli/config.ts), the config file's ${VAR} substitution
 * (cli/tunnels-config.ts) and shared/config.ts (settings of shared/ code). Every other
 * module gets what they read passed down.
 */
import { readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { readEnvironment } from '../../cli/config.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** The config modules: the only ones that may read process.env. */
const CONFIG_MODULES = new Set(['cli/config.ts', 'cli/tunnels-config.ts', 'shared/config.ts']);

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...sources(full));
    else if (/\.tsx?$/.test(entry.name)) out.push(full);
  }
  return out;
}

t.test('nothing outside the config modules reads process.env', async (t) => {
  const readers: string[] = [];
  for (const dir of ['cli', 'relay', 'shared']) {
    for (const file of sources(path.join(root, dir))) {
      const rel = path.relative(root, file).split(path.sep).join('/');
      if (CONFIG_MODULES.has(rel)) continue;
      // Comments may name process.env; code may not (nor `const { env } = process`).
      const code = readFileSync(file, 'utf8')
        .replace(/\/\*[\s\S]*?\*\//g, '')
        .replace(/^\s*\/\/.*$/gm, '');
      if (/process\s*\.\s*env\b|process\s*\[|\{\s*env\s*\}\s*=\s*process\b/.test(code)) {
        readers.push(rel);
      }
    }
  }
  t.same(readers, [], 'modules that read process.env');
});

t.test('readEnvironment: the relay data dir follows XDG_DATA_HOME', async (t) => {
  t.equal(
    readEnvironment({ XDG_DATA_HOME: '/srv/data' }).relayDataDir,
    path.join('/srv/data', 'quick-tunnel', 'relay'),
  );
  t.equal(
    readEnvironment({}).relayDataDir,
    path.join(os.homedir(), '.local', 'share', 'quick-tunnel', 'relay'),
  );
  t.equal(readEnvironment({ XDG_DATA_HOME: '' }).relayDataDir, readEnvironment({}).relayDataDir);
  t.ok(Object.isFrozen(readEnvironment({})));
});
