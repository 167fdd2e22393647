/**
 * `npm run bench [-- NAME... ] [--param value...]`: runs the registered benchmark cases
 * in sequence (all of them, or those named; `scale` names the scale cases). Each case prints human-readable lines on
 * stderr and one JSON line on stdout, so `npm run -s bench > results.jsonl` keeps only
 * the machine-readable results for a comparison script.
 *
 * Parameters come from flags or `QUICK_TUNNEL_BENCH_*` environment variables (e.g.
 * `QUICK_TUNNEL_BENCH_BYTES=64MiB` = `--bytes 64MiB`); `--help` lists them. An unknown
 * flag is an error; an environment variable no selected case knows is ignored. A small
 * CI run: `QUICK_TUNNEL_BENCH_BYTES=64MiB QUICK_TUNNEL_BENCH_STREAMS_BYTES=64MiB
 * npm run -s bench -- mux`.
 *
 * To add a case: write `bench/<name>.ts` exporting a `BenchCase`, add it to `CASES`.
 */
import { clusterBench } from './cluster.js';
import { e2eBench } from './e2e.js';
import { gcBench } from './gc.js';
import { muxBench } from './mux.js';
import { pageBench } from './page.js';
import { BenchParams, type ParamSpec } from './params.js';
import { scaleBenches } from './scale.js';
import { tuiBench } from './tui.js';

/** One benchmark: a name to select it by, its parameters, and a run that returns JSON. */
export interface BenchCase {
  name: string;
  description: string;
  params: Record<string, ParamSpec>;
  /** Prints human lines with `log` (stderr) and resolves with the JSON result fields. */
  run(params: BenchParams, log: (line: string) => void): Promise<Record<string, unknown>>;
}

const CASES: readonly BenchCase[] = [
  muxBench,
  e2eBench,
  pageBench,
  tuiBench,
  ...scaleBenches,
  clusterBench,
  gcBench,
];

/** A group name on the command line selects its cases (`scale`: those of bench/scale/). */
const GROUPS: Record<string, readonly string[]> = { scale: scaleBenches.map((c) => c.name) };

const GLOBAL_PARAMS: Record<string, ParamSpec> = {
  help: { default: 'false', help: 'list the cases and their parameters' },
};

function usage(): string {
  const lines = ['usage: npm run bench -- [CASE...] [--param value...]'];
  for (const [group, members] of Object.entries(GROUPS)) {
    lines.push(`  ${group} = ${members.join(' ')}`);
  }
  lines.push('');
  for (const c of CASES) {
    lines.push(`${c.name}: ${c.description}`);
    for (const [name, spec] of Object.entries(c.params)) {
      const env = `QUICK_TUNNEL_BENCH_${name.toUpperCase().replaceAll('-', '_')}`;
      lines.push(`  --${name} (${env}, default ${spec.default}): ${spec.help}`);
    }
  }
  return lines.join('\n');
}

async function main(): Promise<number> {
  const { names, params } = BenchParams.parse(process.argv.slice(2), process.env);
  if (params.has('help')) {
    process.stderr.write(`${usage()}\n`);
    return 0;
  }
  const wanted = names.flatMap((n) => GROUPS[n] ?? [n]);
  const unknownCases = wanted.filter((n) => !CASES.some((c) => c.name === n));
  if (unknownCases.length > 0) {
    process.stderr.write(`unknown benchmark ${unknownCases.join(', ')}\n\n${usage()}\n`);
    return 1;
  }
  const selected = wanted.length === 0 ? CASES : CASES.filter((c) => wanted.includes(c.name));
  // A typo in a parameter would silently run the default: refuse it instead.
  const known = new Set([
    ...Object.keys(GLOBAL_PARAMS),
    ...selected.flatMap((c) => Object.keys(c.params)),
  ]);
  const unknownParams = params.flagNames().filter((k) => !known.has(k));
  if (unknownParams.length > 0) {
    process.stderr.write(`unknown parameter ${unknownParams.map((k) => `--${k}`).join(', ')}\n`);
    return 1;
  }
  let failed = 0;
  for (const c of selected) {
    const log = (line: string): void => {
      process.stderr.write(`[${c.name}] ${line}\n`);
    };
    try {
      const result = await c.run(params, log);
      process.stdout.write(`${JSON.stringify({ bench: c.name, ...result })}\n`);
    } catch (err) {
      failed++;
      log(`FAILED: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
      process.stdout.write(
        `${JSON.stringify({ bench: c.name, error: err instanceof Error ? err.message : String(err) })}\n`,
      );
    }
  }
  return failed === 0 ? 0 : 1;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`bench crashed: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exitCode = 1;
  },
);
