/**
 * The flags of `quick-tunnel <target>` and of the commands that talk to a relay's API
 * (yargs definitions and their mapping to the commands' options). Kept apart from the
 * commands so the CLI's startup (cli/main.ts) loads nothing more.
 */
import type { Argv } from 'yargs';
import { effectiveDefaultRelay } from '../config.js';

let defaultRelayText: string | undefined;
/** The effective default relay, for --help (read once, only when help text is built). */
export function defaultRelay(): string {
  defaultRelayText ??= effectiveDefaultRelay();
  return defaultRelayText;
}

/** A repeatable flag's values (yargs gives one value, several, or none). */
export const collect = (v: unknown): string[] =>
  (Array.isArray(v) ? v : v === undefined ? [] : [v]).map(String).filter((s) => s !== '');

/** The flags of `quick-tunnel <target>` (also `tunnel run`). */
export function exposeOptions<T>(y: Argv<T>) {
  return y
    .option('relay', {
      type: 'string',
      describe: `relay URL (default: ${defaultRelay()})`,
    })
    .option('token', { type: 'string', describe: 'relay access token (also QUICK_TUNNEL_TOKEN)' })
    .option('ca', {
      type: 'string',
      describe: "extra CA / the relay's self-signed certificate to trust",
    })
    .option('ca-fingerprint', {
      type: 'string',
      describe:
        "trust the relay's certificate by its SHA-256 fingerprint (SHA256:…, printed by the relay)",
    })
    .option('name', { type: 'string', describe: 'run the named tunnel NAME (created beforehand)' })
    .option('log', {
      choices: ['text', 'json'] as const,
      describe: 'line output instead of the TUI',
    })
    .option('host-header', {
      type: 'string',
      describe:
        "Host sent to the local app: 'rewrite' (its own host:port) or a value (default: the visitor's)",
    })
    .option('origin-insecure', {
      type: 'boolean',
      default: false,
      describe:
        'do not verify the TLS certificate of an https:// local app (self-signed dev servers)',
    })
    .option('relay-insecure', {
      type: 'boolean',
      default: false,
      describe:
        "DANGEROUS: do not verify the relay's TLS certificate (anyone on the path can read and alter traffic)",
    })
    .option('connections', {
      type: 'number',
      describe: 'WebSocket connections to keep to the relay (HA)',
      default: 2,
    })
    .option('basic-auth', {
      type: 'string',
      describe:
        'visitors must log in with USER:PASS (checked by the relay; the relay only gets a hash)',
    })
    .option('allow-ip', {
      type: 'string',
      array: true,
      describe: 'only these visitor addresses/CIDRs may visit (repeatable; IPv4 and IPv6)',
    })
    .option('color', {
      type: 'boolean',
      default: true,
      describe: 'colour output (--no-color; NO_COLOR respected)',
    })
    .option('lan', {
      type: 'boolean',
      default: false,
      describe:
        "embedded relay: also serve on this machine's LAN address (anyone on the network can open it)",
    })
    .option('inspect-port', {
      type: 'number',
      describe:
        'web inspector port on 127.0.0.1 (default 4040; the next free one if taken; 0 = any)',
    })
    .option('inspect', {
      type: 'boolean',
      default: true,
      describe: 'serve the web inspector (--no-inspect: off)',
    });
}

/** The options of exposeOptions() as runExpose() takes them. */
interface ExposeArgs {
  relay: string | undefined;
  token: string | undefined;
  ca: string | undefined;
  'ca-fingerprint': string | undefined;
  log: 'text' | 'json' | undefined;
  'host-header': string | undefined;
  'origin-insecure': boolean;
  'relay-insecure': boolean;
  connections: number;
  color: boolean;
  'basic-auth': string | undefined;
  'allow-ip': unknown;
  lan: boolean;
  'inspect-port': number | undefined;
  inspect: boolean;
}

/** The flags as runExpose() takes them. */
export function exposeFlags(args: ExposeArgs) {
  return {
    relay: args.relay,
    token: args.token,
    ca: args.ca,
    caFingerprint: args['ca-fingerprint'],
    log: args.log,
    hostHeader: args['host-header'],
    originInsecure: args['origin-insecure'],
    relayInsecure: args['relay-insecure'],
    connections: args.connections,
    color: args.color,
    basicAuth: args['basic-auth'],
    allowIp: collect(args['allow-ip']),
    lan: args.lan,
    inspect: args.inspect ? args['inspect-port'] : (false as const),
  };
}

/** Flags every command that talks to a relay's API accepts. */
export function relayApiOptions<T>(y: Argv<T>) {
  return y
    .option('relay', { type: 'string', describe: `relay URL (default: ${defaultRelay()})` })
    .option('token', { type: 'string', describe: 'relay access token (also QUICK_TUNNEL_TOKEN)' })
    .option('ca', {
      type: 'string',
      describe: "extra CA / the relay's self-signed certificate to trust",
    })
    .option('ca-fingerprint', {
      type: 'string',
      describe: "trust the relay's certificate by its SHA-256 fingerprint (SHA256:…)",
    })
    .option('relay-insecure', {
      type: 'boolean',
      default: false,
      describe: "DANGEROUS: do not verify the relay's TLS certificate",
    });
}
