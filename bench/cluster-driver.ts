/**
 * Child process of the cluster benchmark (bench/cluster.ts), driven over IPC: opens
 * `count` real tunnel clients in this one process (the CLI's own TunnelRunner and
 * supervisor, one connection each, `--relay FIRST,MORE…`), so a kill -9 of a relay makes
 * them reconnect to the survivors exactly as the CLI does. 200 CLI processes would not
 * fit on the two cores.
 *
 * Messages in: `{ open: { count, relays, ca, originPort } }`, `{ events: true }`,
 * `{ stop: true }`. Out: `{ opened: string[] }` (hostnames) or `{ error }`;
 * `{ events: { lost, reconnected } }` (per tunnel, Date.now() of its first
 * connection-lost and of its first reconnected event, or null); `{ stopped: true }`.
 * Bounded: at most 20 tunnels connect at once, each within 60 s.
 */
import { parseTarget } from '../cli/origin/target.js';
import { remoteRelay } from '../cli/tunnel/relay-connector.js';
import { TunnelRunner, hostHeaderMode } from '../cli/tunnel/runner.js';
import { VERSION } from '../shared/version.js';

interface OpenMessage {
  count: number;
  relays: string[];
  ca: string;
  originPort: number;
}

const runners: TunnelRunner[] = [];
const lostAt: (number | null)[] = [];
const reconnectedAt: (number | null)[] = [];

function send(msg: Record<string, unknown>): void {
  process.send?.(msg);
}

async function open(m: OpenMessage): Promise<string[]> {
  const [first, ...more] = m.relays.map((u) => new URL(u));
  const hostnames = new Array<string>(m.count);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < m.count) {
      const i = next++;
      lostAt[i] = null;
      reconnectedAt[i] = null;
      const runner = new TunnelRunner(
        {
          target: parseTarget(String(m.originPort)),
          hostHeader: hostHeaderMode(undefined),
          originInsecure: false,
          capture: false,
          request: { clientVersion: VERSION },
          relay: remoteRelay({ relay: first!, more, ca: m.ca, connections: 1 }),
        },
        {
          emit: (e) => {
            if (e.event === 'connection-lost') lostAt[i] ??= Date.now();
            if (e.event === 'reconnected') reconnectedAt[i] ??= Date.now();
          },
        },
      );
      runners.push(runner);
      let timer: NodeJS.Timeout | undefined;
      const assignment = await Promise.race([
        runner.start(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`tunnel ${i} not up within 60 s`)), 60_000);
        }),
      ]).finally(() => clearTimeout(timer));
      hostnames[i] = assignment.hostname;
    }
  };
  await Promise.all(Array.from({ length: Math.min(20, m.count) }, worker));
  return hostnames;
}

process.on('message', (msg: { open?: OpenMessage; events?: boolean; stop?: boolean }) => {
  if (msg.open !== undefined) {
    open(msg.open).then(
      (opened) => send({ opened }),
      (err: unknown) => send({ error: err instanceof Error ? err.message : String(err) }),
    );
  } else if (msg.events === true) {
    send({ events: { lost: lostAt, reconnected: reconnectedAt } });
  } else if (msg.stop === true) {
    void Promise.allSettled(runners.map((r) => r.stop(0))).then(() => {
      send({ stopped: true });
      process.disconnect();
    });
  }
});
process.on('disconnect', () => {
  for (const r of runners) void r.stop(0).catch(() => {});
});
