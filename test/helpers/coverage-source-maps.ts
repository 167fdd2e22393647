/**
 * First half of `npm run coverage` (after a tap run, before `tap report`). tsx compiles without `sourcesContent` in its source maps (unless NODE_V8_COVERAGE is
 * set), and Node records that as `sourcesContent: [null]`; c8 (through v8-to-istanbul)
 * then takes that null as the original source, and every .ts file reports one line.
 * Dropping the empty `sourcesContent` makes it read the source from disk, as it should.
 */
import { readFile, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';

const dir = path.resolve('.tap/coverage');
const files = await readdir(dir).catch(() => [] as string[]);
let fixed = 0;
for (const name of files) {
  if (!name.endsWith('.json')) continue;
  const file = path.join(dir, name);
  const cov = JSON.parse(await readFile(file, 'utf8')) as {
    'source-map-cache'?: Record<string, { data?: { sourcesContent?: unknown[] } }>;
  };
  let changed = false;
  for (const entry of Object.values(cov['source-map-cache'] ?? {})) {
    const content = entry.data?.sourcesContent;
    if (content !== undefined && content.every((c) => c === null || c === undefined)) {
      delete entry.data!.sourcesContent;
      changed = true;
    }
  }
  if (changed) {
    await writeFile(file, JSON.stringify(cov));
    fixed++;
  }
}
if (fixed > 0) process.stderr.write(`# coverage: source maps of ${fixed} files made readable\n`);
