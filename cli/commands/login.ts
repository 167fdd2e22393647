/**
 * `quick-tunnel login [URL] --relay URL [--token TOKEN] [--ca FILE] [--ca-fingerprint SHA256:…]`
 * saves the default relay (and its token and how to trust it) to
 * `<config dir>/config.json`, mode 0600, so every command uses it without flags. It first
 * checks them the way a tunnel will use them: a tunnel handshake with the token (the
 * short-lived tunnel it gets is closed at once). Nothing is saved when that fails.
 * `quick-tunnel logout` deletes the file: back to the embedded local relay.
 */
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { ConfigError, QuickTunnelError } from '../../shared/errors.js';
import { formatFingerprint, parseFingerprint } from '../../shared/fingerprint.js';
import { VERSION } from '../../shared/version.js';
import {
  configFilePath,
  parseRelayUrl,
  readConfigFile,
  readEnvironment,
  relayProxy,
  writeConfigFile,
  type FileConfig,
  type RelaySettings,
} from '../config.js';
import { dialRelay } from '../tunnel/client.js';
import { explainRelayError } from '../tunnel/explain.js';
import { relayCa } from '../tunnel/pin.js';
import { proxyAgentFor } from '../tunnel/proxy.js';

export interface LoginOptions {
  /** `login URL` (positional). */
  url?: string | undefined;
  relay: string | undefined;
  token: string | undefined;
  ca: string | undefined;
  caFingerprint?: string | undefined;
}

interface Output {
  out: (l: string) => void;
  err: (l: string) => void;
}

const stdio: Output = {
  out: (l) => void process.stdout.write(`${l}\n`),
  err: (l) => void process.stderr.write(`${l}\n`),
};

export async function runLogin(opts: LoginOptions, io: Output = stdio): Promise<number> {
  const env = readEnvironment();
  if (opts.url !== undefined && opts.relay !== undefined && opts.url !== opts.relay) {
    throw new ConfigError(
      `two relays given: ${opts.url} and --relay ${opts.relay}; give the URL once`,
    );
  }
  const input = opts.url ?? opts.relay;
  if (input === undefined) {
    throw new ConfigError('say which relay: quick-tunnel login https://relay.example.com', {
      hint: 'add --token TOKEN if the relay needs one, and --ca-fingerprint SHA256:… for a self-signed relay',
    });
  }
  const relay = parseRelayUrl(input, opts.url !== undefined ? 'the URL argument' : '--relay');
  const relayText = relay.href.replace(/\/$/, '');
  const previous = readConfigFile(env.configDir);
  const sameRelay = previous.relay !== undefined && safeHref(previous.relay) === relayText;
  const file = configFilePath(env.configDir);

  // A token or trust setting saved for another relay would only cause confusing refusals.
  const keep = <T>(flag: T | undefined, saved: T | undefined): T | undefined =>
    flag ?? (sameRelay ? saved : undefined);
  const token = keep(opts.token, previous.token);
  const caFile = opts.ca !== undefined ? path.resolve(opts.ca) : keep(undefined, previous.ca);
  const fingerprint = keep(opts.caFingerprint, previous.caFingerprint);
  const source = (flag: unknown, name: string): string =>
    flag !== undefined ? name : `the config file ${file}`;
  const settings: RelaySettings = {
    relay,
    token,
    caFile,
    caFingerprint:
      fingerprint === undefined
        ? undefined
        : parseFingerprint(fingerprint, source(opts.caFingerprint, '--ca-fingerprint')),
    configDir: env.configDir,
    from: {
      relay: opts.url !== undefined ? 'the URL argument' : '--relay',
      token: source(opts.token, '--token'),
      caFile: source(opts.ca, '--ca'),
      caFingerprint: source(opts.caFingerprint, '--ca-fingerprint'),
    },
  };

  // Check it as a tunnel will use it: TLS trust, then the token, in one handshake.
  const proxy = relayProxy(relay);
  try {
    const ca = await relayCa(settings, relay, proxy);
    const conn = await dialRelay({
      relay,
      request: { clientVersion: VERSION, ...(token !== undefined ? { token } : {}) },
      ca,
      agent: await proxyAgentFor(proxy, relay),
      connectTimeoutMs: 10_000,
    });
    conn.session.close();
    await conn.closed;
  } catch (err) {
    const explained = explainRelayError(err, settings);
    if (!(explained instanceof QuickTunnelError)) throw explained;
    throw new QuickTunnelError(explained.code, `${explained.message} (nothing was saved)`, {
      cause: explained,
      hint: explained.hint,
    });
  }

  const config: FileConfig = { relay: relayText };
  if (token !== undefined) config.token = token;
  if (caFile !== undefined) config.ca = caFile;
  if (settings.caFingerprint !== undefined) {
    config.caFingerprint = formatFingerprint(settings.caFingerprint);
  }
  await writeConfigFile(env.configDir, config);
  io.out(`Saved ${relayText} as the default relay in ${file} (mode 0600)`);
  io.out(`  token: ${config.token !== undefined ? 'saved (checked with the relay)' : 'none'}`);
  if (config.ca !== undefined) io.out(`  CA:    ${config.ca}`);
  if (config.caFingerprint !== undefined) io.out(`  pinned certificate: ${config.caFingerprint}`);
  io.out(
    'Now `quick-tunnel 3000` uses this relay; `quick-tunnel logout` goes back to the local one.',
  );
  return 0;
}

/** `quick-tunnel logout`: forgets the saved relay (and token); the embedded relay again. */
export async function runLogout(io: Output = stdio): Promise<number> {
  const env = readEnvironment();
  const file = configFilePath(env.configDir);
  const previous = readConfigFile(env.configDir);
  if (previous.relay === undefined && previous.token === undefined) {
    io.out(`No relay saved (${file}): quick-tunnel already uses the embedded local relay.`);
  } else {
    await rm(file, { force: true });
    io.out(
      `Forgot ${previous.relay ?? 'the saved relay'}${previous.token !== undefined ? ' and its token' : ''} (deleted ${file}).`,
    );
  }
  if (env.relay !== undefined) {
    io.err(`note: QUICK_TUNNEL_RELAY=${env.relay} is set in your environment and still applies`);
  } else {
    io.out('quick-tunnel now uses the embedded local relay (http://<name>.localhost).');
  }
  io.out('Named-tunnel credentials stay in place (quick-tunnel tunnel list after a login).');
  return 0;
}

function safeHref(input: string): string | undefined {
  try {
    return parseRelayUrl(input).href.replace(/\/$/, '');
  } catch {
    return undefined;
  }
}
