/** The soak's mixed traffic: small GETs, transfers and WebSockets through the real CLI. */
import http from 'node:http';
import { RawConnection } from './http-load.js';
import { log, sleep } from './ipc.js';
import { Latencies, round, Errors } from './stats.js';
import { type Echoer, openVisitorWs } from './ws-fanout.js';

export interface SoakArgs {
  port: number;
  host: string;
  durationS: number;
  /** Small GETs per second (over a few keep-alive connections). */
  rps: number;
  /** Size of each upload and each download. */
  transferBytes: number;
  /** Transfers per second (uploads and downloads alternate). */
  transfersPerS: number;
  /** Visitor WebSockets kept open; each is replaced after a random lifetime. */
  websockets: number;
  wsLifetimeS: number;
  /** Echo messages per second on each WebSocket. */
  wsMessagesPerS: number;
  sourceAddresses: string[];
}

export function transfer(port: number, host: string, kind: 'upload' | 'download', bytes: number) {
  return new Promise<void>((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method: kind === 'upload' ? 'POST' : 'GET',
        path: kind === 'upload' ? '/upload' : `/download?bytes=${bytes}`,
        headers: kind === 'upload' ? { host, 'content-length': String(bytes) } : { host },
        agent: false,
      },
      (res) => {
        let n = 0;
        let text = '';
        res.on('data', (c: Buffer) => {
          n += c.length;
          if (kind === 'upload') text += c.toString();
        });
        res.on('end', () => {
          const got = kind === 'upload' ? Number(text) : n;
          if (res.statusCode !== 200) reject(new Error(`${kind}: HTTP ${res.statusCode}`));
          else if (got !== bytes) reject(new Error(`${kind}: ${got} of ${bytes} bytes`));
          else resolve();
        });
        res.on('error', reject);
      },
    );
    req.setTimeout(60_000, () => req.destroy(new Error(`${kind}: timeout`)));
    req.on('error', reject);
    if (kind === 'upload') {
      const chunk = Buffer.alloc(Math.min(bytes, 64 * 1024), 0x62);
      let left = bytes;
      const pump = (): void => {
        while (left > 0) {
          const n = Math.min(left, chunk.length);
          left -= n;
          if (!req.write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
            req.once('drain', pump);
            return;
          }
        }
        req.end();
      };
      pump();
    } else req.end();
  });
}

/** Mixed traffic through one tunnel for `durationS`, at fixed rates. */
export async function soak(a: SoakArgs) {
  const started = performance.now();
  const endAt = started + a.durationS * 1000;
  const errors = new Errors();
  const getLat = new Latencies();
  const wsLat = new Latencies();
  let transfers = 0;
  let transferBytes = 0;
  let wsOpened = 0;
  /** GETs and transfers not sent because the previous ones had not finished: stalls. */
  let skipped = 0;
  const addr = (i: number): string => a.sourceAddresses[i % a.sourceAddresses.length]!;

  // Small GETs: a fixed schedule over up to 32 keep-alive connections. A GET due while
  // all are busy (a stall of ≥ 32 / rps seconds somewhere) is skipped and counted.
  const gets = async (): Promise<void> => {
    const conns: (RawConnection | undefined)[] = new Array(32);
    const busy = new Array<boolean>(32).fill(false);
    let sent = 0;
    const inflight = new Set<Promise<void>>();
    while (performance.now() < endAt) {
      const due = Math.floor(((performance.now() - started) / 1000) * a.rps);
      while (sent < due) {
        sent++;
        const slot = busy.indexOf(false);
        if (slot === -1) {
          skipped++;
          continue;
        }
        busy[slot] = true;
        const p = (async () => {
          try {
            let c = conns[slot];
            if (c === undefined || c.closed) {
              c = await RawConnection.connect(a.port, addr(slot), 10_000);
              conns[slot] = c;
            }
            const t0 = performance.now();
            const r = await c.request(a.host, '/small', 10_000);
            getLat.add(performance.now() - t0);
            if (r.status !== 200) errors.add(`small GET: HTTP ${r.status}`);
          } catch (err) {
            errors.add(`small GET: ${(err as Error).message}`);
          } finally {
            busy[slot] = false;
          }
        })();
        inflight.add(p);
        void p.finally(() => inflight.delete(p));
      }
      await sleep(10);
    }
    await Promise.all(inflight);
    for (const c of conns) c?.close();
  };

  // Uploads and downloads, alternating, at most 4 at once.
  const transfersLoop = async (): Promise<void> => {
    if (a.transfersPerS <= 0) return;
    const inflight = new Set<Promise<void>>();
    let n = 0;
    while (performance.now() < endAt) {
      const due = Math.floor(((performance.now() - started) / 1000) * a.transfersPerS);
      while (n < due) {
        const kind = n++ % 2 === 0 ? 'upload' : 'download';
        if (inflight.size >= 4) {
          skipped++;
          continue;
        }
        const p = transfer(a.port, a.host, kind, a.transferBytes).then(
          () => {
            transfers++;
            transferBytes += a.transferBytes;
          },
          (err: unknown) => errors.add((err as Error).message),
        );
        inflight.add(p);
        void p.finally(() => inflight.delete(p));
      }
      await sleep(20);
    }
    await Promise.all(inflight);
  };

  // WebSockets: each lives a random lifetime, echoing, then is replaced.
  const wsLane = async (i: number): Promise<void> => {
    const payload = Buffer.alloc(256, i & 0xff);
    while (performance.now() < endAt) {
      let s: Echoer;
      try {
        s = await openVisitorWs(a.port, a.host, addr(i), 10_000);
        wsOpened++;
      } catch (err) {
        errors.add(`websocket open: ${(err as Error).message}`);
        await sleep(1_000);
        continue;
      }
      const until = Math.min(
        endAt,
        performance.now() + a.wsLifetimeS * 1000 * (0.5 + Math.random()),
      );
      while (performance.now() < until) {
        try {
          wsLat.add(await s.roundTrip(payload, 10_000));
        } catch (err) {
          errors.add(`websocket: ${(err as Error).message}`);
          break;
        }
        await sleep(1000 / a.wsMessagesPerS);
      }
      s.ws.close();
    }
  };

  let lastLog = started;
  const progress = setInterval(() => {
    if (performance.now() - lastLog < 60_000) return;
    lastLog = performance.now();
    log(
      `soak: ${getLat.count} GETs, ${transfers} transfers, ${wsOpened} websockets, ${errors.count} errors`,
    );
  }, 5_000);
  try {
    await Promise.all([
      gets(),
      transfersLoop(),
      ...Array.from({ length: a.websockets }, (_, i) => wsLane(i)),
    ]);
  } finally {
    clearInterval(progress);
  }
  return {
    durationS: round((performance.now() - started) / 1000),
    gets: getLat.summary(),
    transfers,
    transferMiB: round(transferBytes / 2 ** 20),
    websocketsOpened: wsOpened,
    websocketMessages: wsLat.summary(),
    skipped,
    errors: errors.toJSON(),
  };
}
