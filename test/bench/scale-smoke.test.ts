/**
 * Smoke test of the scale benchmarks (bench/scale.ts): every case, tiny (20 tunnels, 50
 * visitors, a couple of seconds), through the same code as `npm run bench`: relay
 * process, simulated clients, real CLI and origin. It checks that the cases run and
 * that their correctness figures hold (no errors, no wrong-tunnel answers, no hostname
 * collision, nothing left open after churn); the performance figures come from the full
 * run. The relay runs from sources (no build); the cases run side by side to stay fast.
 */
import t from 'tap';
import { BenchParams } from '../../bench/params.js';
import {
  churnBench,
  idleTunnelsBench,
  idleTunnelsTlsBench,
  manyVisitorsBench,
  soakBench,
  wsFanoutBench,
} from '../../bench/scale.js';

const params = new BenchParams(
  new Map(
    Object.entries({
      'relay-runtime': 'tsx',
      'relay-log-level': 'warn',
      'source-addresses': '2',
      'connect-concurrency': '16',
      tunnels: '20',
      'probe-requests': '40',
      'idle-s': '1',
      visitors: '50',
      'visitor-tunnels': '5',
      'visitor-requests': '3',
      'visitor-think-ms': '20',
      'churn-rate': '20',
      'churn-s': '2',
      'churn-warmup-s': '1',
      'churn-lifetime-ms': '300',
      'churn-vanish-per-10': '0',
      'settle-s': '15',
      websockets: '20',
      'fanout-s': '1',
      'soak-s': '3',
      'soak-sample-s': '1',
      'soak-rps': '20',
      'soak-transfer-bytes': '64KiB',
      'soak-transfers-per-s': '2',
      'soak-websockets': '2',
      'soak-ws-lifetime-s': '1',
    }),
  ),
);

type Result = Record<string, unknown>;

// Six cases with their relay and driver processes side by side: ~120 s on a loaded 2-core
// machine (with coverage on), right at .taprc's 120 s.
t.setTimeout(360_000);

t.test('scale benchmark cases run tiny and report sane figures', async (t) => {
  const lines: string[] = [];
  const run = (c: typeof idleTunnelsBench): Promise<Result> =>
    c.run(params, (line) => lines.push(`[${c.name}] ${line}`));
  const [idle, idleTls, visitors, churn, fanout, soak] = await Promise.all(
    [
      idleTunnelsBench,
      idleTunnelsTlsBench,
      manyVisitorsBench,
      churnBench,
      wsFanoutBench,
      soakBench,
    ].map(run),
  ).catch((err: unknown) => {
    t.comment(lines.join('\n'));
    throw err;
  });

  for (const r of [idle!, idleTls!]) {
    t.match(
      r,
      { tunnels: 20, failed: 0, probeErrors: 0, mismatches: 0, dropped: 0 },
      `${r['case']}`,
    );
    t.type(r['relayBytesPerTunnel'], 'number');
    t.ok((r['p99Ms'] as number) > 0);
  }
  t.match(visitors, { visitors: 50, errors: 0, mismatches: 0, dropped: 0 }, 'many-visitors');
  t.equal(visitors!['requests'], 150);
  t.match(
    churn,
    { failed: 0, collisions: 0, mismatches: 0, connectionsAfter: 0, streamsAfter: 0 },
    'churn',
  );
  t.ok((churn!['opened'] as number) >= 30, `churn opened ${churn!['opened']}`);
  t.ok((churn!['afterFds'] as number) <= (churn!['baseFds'] as number), 'fds back to baseline');
  t.match(fanout, { websockets: 20, errors: 0 }, 'ws-fanout');
  t.ok((fanout!['messages'] as number) > 0);
  t.match(soak, { errors: 0 }, 'soak');
  t.ok((soak!['gets'] as number) > 0 && (soak!['transfers'] as number) > 0);
  t.ok((soak!['websocketMessages'] as number) > 0);
});
