/**
 * The relay's log on a terminal: one readable line per entry (`12:00:01 INFO tunnel
 * registered hostname=… kind=…`) instead of JSON. JSON stays the format when stdout is
 * not a terminal (journald, Docker, log shippers) or with `--log-format json`.
 */
import { Writable } from 'node:stream';

const LEVELS: Record<number, string> = {
  10: 'TRACE',
  20: 'DEBUG',
  30: 'INFO ',
  40: 'WARN ',
  50: 'ERROR',
  60: 'FATAL',
};

/** Fields every line has, or that the line shows otherwise. */
const SKIP = new Set(['level', 'time', 'msg', 'pid', 'hostname', 'service']);

/** One pino JSON line as a readable line. */
export function formatLogLine(json: string): string {
  let entry: Record<string, unknown>;
  try {
    entry = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json;
  }
  const time =
    typeof entry['time'] === 'number' ? new Date(entry['time']).toISOString().slice(11, 19) : '';
  const level = LEVELS[entry['level'] as number] ?? String(entry['level']);
  const fields = Object.entries(entry)
    .filter(([k, v]) => !SKIP.has(k) && v !== undefined)
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`);
  return [time, level, String(entry['msg'] ?? ''), ...fields].join(' ');
}

/** A destination for pino that writes readable lines to `out`. */
export function readableLog(out: NodeJS.WritableStream = process.stdout): Writable {
  let pending = '';
  return new Writable({
    write(chunk: Buffer, _enc, done) {
      pending += chunk.toString('utf8');
      let nl: number;
      while ((nl = pending.indexOf('\n')) !== -1) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        if (line !== '') out.write(`${formatLogLine(line)}\n`);
      }
      done();
    },
  });
}
