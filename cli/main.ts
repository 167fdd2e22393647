/**
 * Entry point: parses the command line (yargs) and runs a command. The only module
 * that calls process.exit. Commands are imported lazily so `--help` stays fast.
 */
import { writeSync } from 'node:fs';
import yargs, { type Argv } from 'yargs';
import { hideBin } from 'yargs/helpers';
import { QuickTunnelError, type QtErrorCode } from '../shared/errors.js';
import {
  collect,
  defaultRelay,
  exposeFlags,
  exposeOptions,
  relayApiOptions,
} from './commands/expose-flags.js';
import { relayCommandOptions, relayOptions } from './commands/relay-flags.js';
import { tuneGarbageCollector } from '../shared/runtime.js';
import { VERSION } from '../shared/version.js';

/** `tunnel create|run|list|delete`. */
function tunnelCommands<T>(y: Argv<T>, setExit: (code: number) => void) {
  const flags = (args: {
    relay?: string | undefined;
    token?: string | undefined;
    ca?: string | undefined;
    'ca-fingerprint'?: string | undefined;
    'relay-insecure'?: boolean | undefined;
  }) => ({
    relay: args.relay,
    token: args.token,
    ca: args.ca,
    caFingerprint: args['ca-fingerprint'],
    relayInsecure: args['relay-insecure'] === true,
  });
  return y
    .command(
      'create <name>',
      'reserve NAME.<relay domain> and store its credential on this machine',
      (y) =>
        relayApiOptions(y)
          .positional('name', { type: 'string', demandOption: true })
          .option('url', { type: 'string', describe: 'local target `tunnel run` uses by default' })
          .option('queue', {
            type: 'boolean',
            default: false,
            describe: 'keep webhooks (POST/PUT/PATCH/DELETE) on the relay while offline',
          })
          .option('json', { type: 'boolean', default: false, describe: 'one JSON line' }),
      async (args) => {
        const { runTunnelCreate } = await import('./commands/tunnel.js');
        setExit(
          await runTunnelCreate({
            ...flags(args),
            name: String(args.name),
            url: args.url,
            json: args.json,
            queue: args.queue,
          }),
        );
      },
    )
    .command(
      'run <name>',
      'serve the named tunnel NAME (run it several times for replicas)',
      (y) =>
        exposeOptions(y)
          .hide('name')
          .option('relay', { type: 'string', describe: `relay URL (default: ${defaultRelay()})` })
          .positional('name', { type: 'string', demandOption: true })
          .option('url', {
            type: 'string',
            describe: 'local target: PORT | HOST:PORT | http(s)://HOST:PORT (remembered)',
          }),
      async (args) => {
        const { runTunnelRun } = await import('./commands/tunnel.js');
        setExit(
          await runTunnelRun({
            name: String(args.name),
            url: args.url,
            ...exposeFlags(args),
          }),
        );
      },
    )
    .command(
      'list',
      'your named tunnels on the relay (credentials stored here) and their status',
      (y) =>
        relayApiOptions(y).option('json', {
          type: 'boolean',
          default: false,
          describe: 'one JSON object',
        }),
      async (args) => {
        const { runTunnelList } = await import('./commands/tunnel.js');
        setExit(await runTunnelList({ ...flags(args), json: args.json }));
      },
    )
    .command(
      'delete <name>',
      'delete the named tunnel NAME on the relay and its local credential',
      (y) =>
        relayApiOptions(y)
          .positional('name', { type: 'string', demandOption: true })
          .option('force', {
            type: 'boolean',
            default: false,
            describe: 'delete even while connected (disconnects it)',
          }),
      async (args) => {
        const { runTunnelDelete } = await import('./commands/tunnel.js');
        setExit(
          await runTunnelDelete({ ...flags(args), name: String(args.name), force: args.force }),
        );
      },
    )
    .command(
      'queue <name>',
      'what the relay keeps for NAME while it is offline (store-and-forward); turn it on/off, purge',
      (y) =>
        relayApiOptions(y)
          .positional('name', { type: 'string', demandOption: true })
          .option('enable', { type: 'boolean', default: false, describe: 'turn the queue on' })
          .option('disable', { type: 'boolean', default: false, describe: 'turn the queue off' })
          .option('purge', { type: 'boolean', default: false, describe: 'clear the queue' })
          .option('failed', {
            type: 'boolean',
            default: false,
            describe: 'with --purge: clear only the failed requests',
          })
          .option('json', { type: 'boolean', default: false, describe: 'one JSON object' }),
      async (args) => {
        const { runTunnelQueue } = await import('./commands/tunnel-queue.js');
        setExit(
          await runTunnelQueue({
            ...flags(args),
            name: String(args.name),
            enable: args.enable,
            disable: args.disable,
            purge: args.purge,
            failed: args.failed,
            json: args.json,
          }),
        );
      },
    )
    .demandCommand(1, 'say which: tunnel create | run | list | delete | queue');
}

/** TARGET or --url (cloudflared's spelling); both must agree. */
function targetOf(positional: string | undefined, url: string | undefined): string | undefined {
  if (positional !== undefined && url !== undefined && positional !== url) {
    throw new UsageError(`two targets given: ${positional} and --url ${url}; give one`);
  }
  return positional ?? url;
}

/** The command words; anything else first is a target (or nothing). */
const COMMAND_WORDS = new Set(['relay', 'start', 'config', 'tunnel', 'login', 'logout']);

/** A fixed hostname, as other tools ask for one. */
const NAMED_TUNNEL_HINT =
  "a fixed hostname is a named tunnel: 'quick-tunnel tunnel create NAME', then " +
  "'quick-tunnel 3000 --name NAME'";

/**
 * Flags of ngrok, localtunnel and cloudflared that quick-tunnel does not take, with what it
 * does instead: said after "Unknown argument", so a command copied from their docs gets a
 * way forward rather than only a refusal.
 */
const FOREIGN_FLAGS: Readonly<Record<string, string>> = {
  subdomain: NAMED_TUNNEL_HINT, // localtunnel, ngrok v2
  hostname: NAMED_TUNNEL_HINT, // ngrok v2, cloudflared
  domain: NAMED_TUNNEL_HINT, // ngrok v3 (the relay's --domain is another command)
  region:
    "there are no regions: tunnels live on the relay you pick with --relay (or 'quick-tunnel login URL')",
  authtoken:
    "the relay's access token is --token TOKEN (or QUICK_TUNNEL_TOKEN, or 'quick-tunnel login URL --token TOKEN')",
  port: "give the port as the target: 'quick-tunnel 3000'", // localtunnel
  'local-host': "give the host as the target: 'quick-tunnel HOST:PORT'", // localtunnel
};

/**
 * yargs names an unknown flag in both spellings ("Unknown arguments: bogus-flag,
 * bogusFlag"): keep the one the user typed, as a flag, with what to use instead when it is
 * another tool's (FOREIGN_FLAGS). A stray word after the target (`quick-tunnel 3000 4000`,
 * `quick-tunnel 3000 extra`) is named as typed, with what the command takes instead.
 */
function onceEach(msg: string, argv: readonly string[]): string {
  const m = /^Unknown arguments?: (.*)$/.exec(msg);
  if (m === null) return msg;
  const names = m[1]!.split(', ');
  const kebab = (n: string): string => n.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
  const kept = names.filter(
    (n, i) => !(kebab(n) !== n && names.some((o, j) => j !== i && o === kebab(n))),
  );
  const typedAsFlag = (n: string): boolean =>
    argv.some((a) => a === `--${n}` || a.startsWith(`--${n}=`) || a === `-${n}`);
  const isWord = (n: string): boolean => !typedAsFlag(n) && argv.includes(n);
  // The first word: a command (`tunnel`, `relay`, ...), a target, or a flag's value.
  const first = argv.find((a) => !a.startsWith('-')) ?? '';
  if (kept.every(isWord)) {
    const what = `unexpected ${kept.length === 1 ? 'argument' : 'arguments'}: ${kept.join(' ')}`;
    // After a target (not a command word such as `tunnel`): someone trying two ports.
    return /^\d+$|:/.test(first)
      ? `${what}; quick-tunnel exposes one target (PORT, HOST:PORT or URL); for several ` +
          "tunnels at once, list them in quick-tunnel.yml and run 'quick-tunnel start'"
      : what;
  }
  const shown = kept.map((n) => (isWord(n) || /^\d/.test(n) || n.includes(' ') ? n : `--${n}`));
  // Other tools' flags only where quick-tunnel exposes a port (not after `relay`, ...).
  const exposing = !COMMAND_WORDS.has(first);
  const hints = kept
    .filter((n) => exposing && typedAsFlag(n) && Object.hasOwn(FOREIGN_FLAGS, n))
    .map((n) => (kept.length === 1 ? FOREIGN_FLAGS[n]! : `--${n}: ${FOREIGN_FLAGS[n]!}`));
  return (
    `Unknown ${kept.length === 1 ? 'argument' : 'arguments'}: ${shown.join(', ')}` +
    hints.map((h) => `; ${h}`).join('')
  );
}

async function main(input: string[]): Promise<number> {
  // Before yargs runs, so it covers everything the command loads. A `relay` word anywhere
  // (flags may come first) means the relay; a tunnel named "relay" only costs its client
  // some RSS. In here, a bad QUICK_TUNNEL_SPEED_TRICKS is reported as a ConfigError.
  tuneGarbageCollector(input.includes('relay') ? 'relay' : 'client');
  let exitCode = 0;
  // `quick-tunnel http 3000`, as ngrok says it: the word adds nothing here.
  const argv = input[0] === 'http' && input.length > 1 ? input.slice(1) : input;
  // `ngrok tcp 22` / `ngrok tls 443`: say so, instead of "unexpected argument: 22".
  if ((input[0] === 'tcp' || input[0] === 'tls') && /^[^-]/.test(input[1] ?? '')) {
    throw new UsageError(
      `quick-tunnel forwards HTTP and WebSockets; raw ${input[0].toUpperCase()} tunnels ` +
        `('ngrok ${input.slice(0, 2).join(' ')}') are not supported. For a web app on that ` +
        `port: 'quick-tunnel ${input[1]}'`,
    );
  }
  const cli = yargs(argv)
    .scriptName('quick-tunnel')
    .version(VERSION)
    .alias('v', 'version')
    .usage('$0 <target>   expose a local port: PORT | HOST:PORT | http(s)://HOST:PORT')
    .command(
      '$0 [target]',
      'expose a local port through a relay',
      (y) =>
        exposeOptions(y)
          .positional('target', { type: 'string' })
          .option('url', {
            type: 'string',
            describe: 'the local target, as cloudflared takes it (same as the TARGET argument)',
          })
          .example('$0 3000', 'expose localhost:3000 (embedded local relay unless one is saved)')
          .example('$0 http 3000', 'the same, as ngrok says it')
          .example('$0 --url http://localhost:3000', 'the same, as cloudflared says it')
          .example('$0 3000 --lan', 'also open it to phones on this Wi-Fi (no server needed)')
          .example(
            '$0 login https://tunnel.example.com --token SECRET',
            'use your own relay from now on',
          )
          .example('$0 relay --domain tunnel.example.com', 'run a relay on a server'),
      async (args) => {
        const target = targetOf(args.target, args.url);
        if (target === undefined) {
          // No arguments at all: the help with its examples, not a parse error.
          cli.showHelp('log');
          return;
        }
        const { runExpose } = await import('./commands/expose.js');
        exitCode = await runExpose({
          target,
          name: args.name,
          ...exposeFlags(args),
        });
      },
    )
    .command(
      'relay',
      'run a relay (self-hosted server that tunnels connect to)',
      (y) => relayOptions(y),
      async (args) => {
        const { runRelayCommand } = await import('./commands/relay.js');
        exitCode = await runRelayCommand(relayCommandOptions(args));
      },
    )
    .command(
      'start [names..]',
      'run the tunnels of quick-tunnel.yml in this process (all, or the NAMEs given)',
      (y) =>
        y
          .positional('names', { type: 'string', array: true, describe: 'tunnels to start' })
          .option('all', { type: 'boolean', default: false, describe: 'every tunnel (default)' })
          .option('config', {
            type: 'string',
            describe: 'config file (default: ./quick-tunnel.yml, else the one next to login)',
          })
          .option('relay', { type: 'string', describe: "relay URL (overrides the file's)" })
          .option('token', { type: 'string', describe: 'relay access token' })
          .option('ca', { type: 'string', describe: "extra CA / the relay's certificate" })
          .option('log', {
            choices: ['text', 'json'] as const,
            describe: 'line output instead of the TUI',
          })
          .option('relay-insecure', {
            type: 'boolean',
            default: false,
            describe: "DANGEROUS: do not verify the relay's TLS certificate",
          })
          .option('color', { type: 'boolean', default: true, describe: 'colour output' })
          .option('inspect-port', {
            type: 'number',
            describe: 'web inspector port on 127.0.0.1 (default 4040; the next free one if taken)',
          })
          .option('inspect', {
            type: 'boolean',
            default: true,
            describe: 'serve the web inspector (--no-inspect: off)',
          }),
      async (args) => {
        const { runStart } = await import('./commands/start.js');
        exitCode = await runStart({
          names: collect(args.names),
          all: args.all,
          config: args.config,
          relay: args.relay,
          token: args.token,
          ca: args.ca,
          log: args.log,
          relayInsecure: args['relay-insecure'],
          color: args.color,
          inspect: args.inspect ? args['inspect-port'] : false,
        });
      },
    )
    .command('config', 'quick-tunnel.yml: check it', (y) =>
      y
        .command(
          'check',
          'validate quick-tunnel.yml without connecting',
          (y) => y.option('config', { type: 'string', describe: 'config file' }),
          async (args) => {
            const { runConfigCheck } = await import('./commands/start.js');
            exitCode = runConfigCheck({ config: args.config });
          },
        )
        .demandCommand(1, 'say which: config check'),
    )
    .command('tunnel', 'named tunnels: a hostname that survives restarts', (y) =>
      tunnelCommands(y, (code) => (exitCode = code)),
    )
    .command(
      'login [url]',
      'check a relay (and token) and save it as the default, so no command needs the flags',
      (y) =>
        y
          .positional('url', { type: 'string', describe: 'relay URL (same as --relay)' })
          .option('relay', { type: 'string', describe: 'relay URL' })
          .option('token', { type: 'string', describe: 'relay access token' })
          .option('ca', {
            type: 'string',
            describe: "extra CA / the relay's self-signed certificate to trust",
          })
          .option('ca-fingerprint', {
            type: 'string',
            describe: "pin the relay's certificate by its SHA-256 fingerprint (SHA256:…)",
          })
          .example(
            '$0 login https://tunnel.example.com --token SECRET',
            'a relay with a public certificate',
          )
          .example(
            '$0 login --relay https://tunnel.example.com:8443 --ca-fingerprint SHA256:AB:… --token SECRET',
            'a self-signed relay: the command its banner prints',
          ),
      async (args) => {
        const { runLogin } = await import('./commands/login.js');
        exitCode = await runLogin({
          url: args.url,
          relay: args.relay,
          token: args.token,
          ca: args.ca,
          caFingerprint: args['ca-fingerprint'],
        });
      },
    )
    .command(
      'logout',
      'forget the saved relay and token: back to the embedded local relay',
      (y) => y,
      async () => {
        const { runLogout } = await import('./commands/login.js');
        exitCode = await runLogout();
      },
    )
    .strict()
    .help()
    .alias('h', 'help')
    .wrap(Math.min(110, process.stdout.columns || 100))
    .fail((msg, err) => {
      if (err !== undefined && err !== null) throw err;
      throw new UsageError(onceEach(msg, argv));
    });
  await cli.parseAsync();
  return exitCode;
}

/** Bad arguments (yargs refused them): a user error, exit 1. */
class UsageError extends QuickTunnelError {
  constructor(message: string) {
    super('QT_ERR_USAGE', message, { hint: "run 'quick-tunnel --help' for usage" });
  }
}

/**
 * With `--log json`, an error that ends the process is also one JSON line on stdout
 * (`{"event":"error","code","message","hint"}`), so a script reading stdout sees why.
 */
function jsonError(code: QtErrorCode, message: string, hint: string | undefined): void {
  const args = hideBin(process.argv);
  const json = args.some((a, i) => a === '--log=json' || (a === '--log' && args[i + 1] === 'json'));
  if (!json) return;
  const line = {
    time: new Date().toISOString(),
    event: 'error',
    code,
    message,
    ...(hint === undefined ? {} : { hint }),
  };
  writeSync(1, `${JSON.stringify(line)}\n`);
}

main(hideBin(process.argv)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof UsageError) {
      jsonError(err.code, err.message, err.hint);
      process.stderr.write(`error: ${err.message}\nRun 'quick-tunnel --help' for usage.\n`);
      process.exit(1);
    }
    if (err instanceof QuickTunnelError) {
      jsonError(err.code, err.message, err.hint);
      process.stderr.write(
        `error: ${err.message}\n${err.hint === undefined ? '' : `hint: ${err.hint}\n`}`,
      );
      process.exit(1);
    }
    jsonError(
      'QT_ERR_INTERNAL',
      err instanceof Error ? err.message : String(err),
      'this is a bug: please report it with the output on stderr',
    );
    process.stderr.write(
      `quick-tunnel crashed (this is a bug, please report it with the output below):\n${
        err instanceof Error ? (err.stack ?? err.message) : String(err)
      }\n`,
    );
    process.exit(2);
  },
);
