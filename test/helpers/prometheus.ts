/**
 * A strict parser of the Prometheus text exposition format (0.0.4), for tests: it
 * throws on anything a Prometheus server would refuse (bad names, bad escapes, bad
 * values, TYPE after samples, a family split in two, duplicate series, a negative
 * counter…) and returns the metric families.
 */

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface MetricFamily {
  name: string;
  type: 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';
  help: string | undefined;
  samples: Sample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

export function parsePrometheusText(text: string): Map<string, MetricFamily> {
  if (text !== '' && !text.endsWith('\n')) throw new Error('exposition must end with a newline');
  const families = new Map<string, MetricFamily>();
  const seenSeries = new Set<string>();
  const closed = new Set<string>();
  const typeSeen = new Set<string>();
  let current: string | undefined;
  const lines = text.split('\n');
  lines.pop(); // after the final newline
  lines.forEach((line, i) => {
    const where = `line ${i + 1}: ${JSON.stringify(line)}`;
    if (line.trim() === '') return;
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
      if (m === null) return; // a plain comment
      const [, kind, name, rest] = m as unknown as [string, string, string, string];
      if (!METRIC_NAME.test(name)) throw new Error(`bad metric name in ${where}`);
      const family = familyFor(name, where);
      if (kind === 'HELP') {
        if (family.help !== undefined) throw new Error(`second HELP in ${where}`);
        if (/\\[^\\n]/.test(rest.replace(/\\\\/g, ''))) throw new Error(`bad escape in ${where}`);
        family.help = rest.replace(/\\n/g, '\n').replace(/\\\\/g, '\\');
      } else {
        if (!TYPES.has(rest)) throw new Error(`unknown type in ${where}`);
        if (family.samples.length > 0) throw new Error(`TYPE after samples in ${where}`);
        if (typeSeen.has(name)) throw new Error(`second TYPE in ${where}`);
        typeSeen.add(name);
        family.type = rest as MetricFamily['type'];
      }
      return;
    }
    const sample = parseSample(line, where);
    const familyName = familyOf(sample.name);
    const family = familyFor(familyName, where);
    if (family.type === 'counter' && sample.value < 0) throw new Error(`negative counter ${where}`);
    const key = `${sample.name}{${Object.entries(sample.labels)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
      .join(',')}}`;
    if (seenSeries.has(key)) throw new Error(`duplicate series ${key} at ${where}`);
    seenSeries.add(key);
    family.samples.push(sample);
  });
  return families;

  function familyFor(name: string, where: string): MetricFamily {
    if (current !== name) {
      if (closed.has(name)) throw new Error(`metric family ${name} is split in two at ${where}`);
      if (current !== undefined) closed.add(current);
      current = name;
    }
    let f = families.get(name);
    if (f === undefined) {
      f = { name, type: 'untyped', help: undefined, samples: [] };
      families.set(name, f);
    }
    return f;
  }

  /** The family a sample belongs to: histogram/summary samples carry suffixes. */
  function familyOf(sampleName: string): string {
    for (const suffix of ['_bucket', '_sum', '_count']) {
      if (sampleName.endsWith(suffix)) {
        const base = sampleName.slice(0, -suffix.length);
        const t = families.get(base)?.type;
        if (t === 'histogram' || t === 'summary') return base;
      }
    }
    return sampleName;
  }
}

function parseSample(line: string, where: string): Sample {
  const nameMatch = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line);
  if (nameMatch === null) throw new Error(`bad sample name in ${where}`);
  const name = nameMatch[0];
  let i = name.length;
  const labels: Record<string, string> = {};
  if (line[i] === '{') {
    i++;
    for (;;) {
      if (line[i] === '}') {
        i++;
        break;
      }
      const lm = /^[a-zA-Z_][a-zA-Z0-9_]*/.exec(line.slice(i));
      if (lm === null || !LABEL_NAME.test(lm[0])) throw new Error(`bad label name in ${where}`);
      const label = lm[0];
      i += label.length;
      if (line[i] !== '=' || line[i + 1] !== '"') throw new Error(`expected ="… in ${where}`);
      i += 2;
      let value = '';
      for (;;) {
        const c = line[i];
        if (c === undefined) throw new Error(`unterminated label value in ${where}`);
        if (c === '"') {
          i++;
          break;
        }
        if (c === '\\') {
          const e = line[i + 1];
          if (e === '\\') value += '\\';
          else if (e === '"') value += '"';
          else if (e === 'n') value += '\n';
          else throw new Error(`bad escape in label value in ${where}`);
          i += 2;
          continue;
        }
        value += c;
        i++;
      }
      if (label in labels) throw new Error(`duplicate label ${label} in ${where}`);
      labels[label] = value;
      if (line[i] === ',') i++;
      else if (line[i] !== '}') throw new Error(`expected , or } in ${where}`);
    }
  }
  const rest = line.slice(i);
  const vm = /^ (\S+)(?: (-?\d+))?$/.exec(rest);
  if (vm === null) throw new Error(`bad value/timestamp in ${where}`);
  const raw = vm[1]!;
  let value: number;
  if (raw === 'NaN') value = NaN;
  else if (raw === '+Inf') value = Infinity;
  else if (raw === '-Inf') value = -Infinity;
  else if (/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(raw)) value = Number(raw);
  else throw new Error(`bad value ${raw} in ${where}`);
  return { name, labels, value };
}

/** The value of one series (undefined if absent). */
export function sampleValue(
  families: Map<string, MetricFamily>,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  for (const f of families.values()) {
    for (const s of f.samples) {
      if (s.name !== name) continue;
      const keys = Object.keys(s.labels);
      if (
        keys.length === Object.keys(labels).length &&
        keys.every((k) => s.labels[k] === labels[k])
      ) {
        return s.value;
      }
    }
  }
  return undefined;
}
