/**
 * Benchmark parameters: `--name value` / `--name=value` flags, falling back to
 * `QUICK_TUNNEL_BENCH_NAME` environment variables (so CI can shrink a run without
 * editing the command), falling back to each case's declared default. Parsed once in
 * `bench/run.ts` and handed to the cases; nothing else reads `process.env`.
 */

/** One parameter a case understands: its default and a one-line help text. */
export interface ParamSpec {
  default: string;
  help: string;
}

const SIZE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1024,
  kb: 1000,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1000 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1000 ** 3,
  gib: 1024 ** 3,
};

export class BenchParams {
  private readonly values: ReadonlyMap<string, string>;
  private readonly flags: ReadonlySet<string>;

  /** `flags`: the names given on the command line (the rest came from the environment). */
  constructor(values: ReadonlyMap<string, string>, flags: ReadonlySet<string> = new Set()) {
    this.values = values;
    this.flags = flags;
  }

  /**
   * Flags win over environment variables. Returns the names of the cases selected by
   * positional arguments (empty = all) and the parameters.
   */
  static parse(
    argv: readonly string[],
    env: NodeJS.ProcessEnv,
  ): { names: string[]; params: BenchParams } {
    const values = new Map<string, string>();
    for (const [key, value] of Object.entries(env)) {
      if (!key.startsWith('QUICK_TUNNEL_BENCH_') || value === undefined) continue;
      values.set(key.slice('QUICK_TUNNEL_BENCH_'.length).toLowerCase().replaceAll('_', '-'), value);
    }
    const names: string[] = [];
    const flags = new Set<string>();
    for (let i = 0; i < argv.length; i++) {
      const arg = argv[i]!;
      if (!arg.startsWith('--')) {
        names.push(arg);
        continue;
      }
      const eq = arg.indexOf('=');
      const name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
      flags.add(name);
      if (eq !== -1) {
        values.set(name, arg.slice(eq + 1));
      } else if (i + 1 < argv.length && !argv[i + 1]!.startsWith('--')) {
        values.set(name, argv[++i]!);
      } else {
        values.set(name, 'true');
      }
    }
    return { names, params: new BenchParams(values, flags) };
  }

  has(name: string): boolean {
    return this.values.has(name);
  }

  /** Names given as flags (environment variables may also serve other cases). */
  flagNames(): string[] {
    return [...this.flags];
  }

  string(name: string, spec: ParamSpec): string {
    return this.values.get(name) ?? spec.default;
  }

  number(name: string, spec: ParamSpec): number {
    const raw = this.string(name, spec);
    const value = Number(raw);
    if (!Number.isFinite(value)) throw new Error(`--${name} must be a number, got "${raw}"`);
    return value;
  }

  /** A byte count such as `1GiB`, `64MiB`, `512k` or `1000000`. */
  bytes(name: string, spec: ParamSpec): number {
    const raw = this.string(name, spec);
    const match = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(raw);
    const unit = SIZE_UNITS[(match?.[2] ?? '').toLowerCase()];
    if (match === null || unit === undefined) {
      throw new Error(`--${name} must be a size such as 64MiB or 1GiB, got "${raw}"`);
    }
    return Math.round(Number(match[1]) * unit);
  }

  oneOf<T extends string>(name: string, spec: ParamSpec, allowed: readonly T[]): T {
    const raw = this.string(name, spec);
    if (!(allowed as readonly string[]).includes(raw)) {
      throw new Error(`--${name} must be one of ${allowed.join(', ')}, got "${raw}"`);
    }
    return raw as T;
  }
}
