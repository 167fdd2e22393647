/**
 * Real ACME test servers on loopback for the automatic-certificate tests: Debian's
 * `pebble` (2.4; PEBBLE_VA_NOSLEEP=1, a throwaway listener certificate made here with
 * openssl), `pebble-challtestsrv` as the DNS server Pebble validates against (its HTTP
 * API sets TXT records), and `named` with a TSIG key for RFC 2136. Each is killed in
 * t.teardown.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { chmod, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Test } from 'tap';
import { tempDir } from './relay-env.js';

const run = promisify(execFile);

/** A TCP port that was free a moment ago (UDP on the same number is free too, in practice). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  server.close();
  await once(server, 'close');
  return port;
}

/** Starts `cmd`, resolves once a line of its output matches `ready`. */
async function startProcess(
  t: Test,
  cmd: string,
  args: string[],
  ready: RegExp,
  env: NodeJS.ProcessEnv = {},
  timeoutMs = 15_000,
): Promise<{ child: ChildProcess; output: () => string }> {
  const child = spawn(cmd, args, {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
  });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${cmd} did not start in ${timeoutMs} ms:\n${output}`)),
      timeoutMs,
    );
    const onData = (chunk: Buffer): void => {
      output += chunk.toString();
      if (output.length > 64 * 1024) output = output.slice(-32 * 1024);
      if (ready.test(output)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${cmd} exited (${code}) before it was ready:\n${output}`));
    });
  });
  child.removeAllListeners('exit');
  return { child, output: () => output };
}

/** Polls `check` (errors count as "not yet") every 50 ms, for up to 10 s. */
async function until(check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('test server never became ready');
}

export interface ChallTestSrv {
  /** DNS server address, `127.0.0.1:PORT` (UDP and TCP). */
  dns: string;
  /** Management API base, `http://127.0.0.1:PORT`. */
  api: string;
}

export async function startChallTestSrv(t: Test): Promise<ChallTestSrv> {
  const dnsPort = await freePort();
  const apiPort = await freePort();
  await startProcess(
    t,
    'pebble-challtestsrv',
    [
      '-dns01',
      `127.0.0.1:${dnsPort}`,
      '-http01',
      '',
      '-https01',
      '',
      '-tlsalpn01',
      '',
      '-management',
      `127.0.0.1:${apiPort}`,
    ],
    /Starting management server/,
  );
  // The log line comes just before the listeners: wait until the API and DNS answer.
  await until(async () => {
    const res = await fetch(`http://127.0.0.1:${apiPort}/clear-txt`, {
      method: 'POST',
      body: JSON.stringify({ host: 'probe.invalid.' }),
    });
    return res.ok;
  });
  await until(async () => {
    const { stdout } = await run('dig', [
      '@127.0.0.1',
      '-p',
      String(dnsPort),
      '+tries=1',
      '+time=1',
      'A',
      'probe.test',
    ]);
    return stdout.includes('status: NOERROR');
  });
  return { dns: `127.0.0.1:${dnsPort}`, api: `http://127.0.0.1:${apiPort}` };
}

/** Pebble's example EAB key (pebble-config-external-account-bindings.json). */
export const PEBBLE_EAB = {
  kid: 'kid-1',
  hmacKey: 'zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W',
};

export interface Pebble {
  directoryUrl: string;
  /** The listener's self-signed certificate: what --acme-directory-ca trusts. */
  caFile: string;
  ca: string;
  /** Pebble's current intermediate (PEM), from its management interface. */
  intermediate(): Promise<string>;
}

export async function startPebble(
  t: Test,
  options: { dnsServer: string; eab?: boolean; env?: NodeJS.ProcessEnv },
): Promise<Pebble> {
  const dir = await tempDir(t, 'qt-pebble-');
  const caFile = path.join(dir, 'cert.pem');
  const keyFile = path.join(dir, 'key.pem');
  await run('openssl', [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    keyFile,
    '-out',
    caFile,
    '-days',
    '2',
    '-subj',
    '/CN=pebble test listener',
    '-addext',
    'subjectAltName=IP:127.0.0.1,DNS:localhost',
  ]);
  const port = await freePort();
  const mgmt = await freePort();
  const config = {
    pebble: {
      listenAddress: `127.0.0.1:${port}`,
      managementListenAddress: `127.0.0.1:${mgmt}`,
      certificate: caFile,
      privateKey: keyFile,
      httpPort: 5002,
      tlsPort: 5001,
      ocspResponderURL: '',
      externalAccountBindingRequired: options.eab === true,
      ...(options.eab === true
        ? { externalAccountMACKeys: { [PEBBLE_EAB.kid]: PEBBLE_EAB.hmacKey } }
        : {}),
    },
  };
  const configFile = path.join(dir, 'pebble.json');
  await writeFile(configFile, JSON.stringify(config));
  await startProcess(
    t,
    'pebble',
    ['-config', configFile, '-dnsserver', options.dnsServer],
    /ACME directory available/,
    { PEBBLE_VA_NOSLEEP: '1', PEBBLE_WFE_NONCEREJECT: '0', ...options.env },
  );
  const { readFile } = await import('node:fs/promises');
  const ca = await readFile(caFile, 'utf8');
  const { Agent, request } = await import('undici');
  const probe = new Agent({ connect: { ca } });
  await until(async () => {
    const res = await request(`https://127.0.0.1:${port}/dir`, { dispatcher: probe });
    await res.body.text();
    return res.statusCode === 200;
  });
  await probe.close();
  return {
    directoryUrl: `https://127.0.0.1:${port}/dir`,
    caFile,
    ca,
    async intermediate() {
      const dispatcher = new Agent({ connect: { ca } });
      try {
        const res = await request(`https://127.0.0.1:${mgmt}/intermediates/0`, { dispatcher });
        return await res.body.text();
      } finally {
        await dispatcher.close();
      }
    },
  };
}

/**
 * Writes an exec hook (lego's convention: `hook present|cleanup FQDN VALUE`) that sets and
 * clears TXT records through challtestsrv's API. (/clear-txt drops every value of the name;
 * the relay cleans up only after both validations, so that is fine here.)
 */
export async function challTestSrvHook(t: Test, api: string): Promise<string> {
  const dir = await tempDir(t, 'qt-hook-');
  const file = path.join(dir, 'hook.mjs');
  await writeFile(
    file,
    `#!${process.execPath}
const [action, fqdn, value] = process.argv.slice(2);
const post = (p, body) => fetch(${JSON.stringify(api)} + p, { method: 'POST', body: JSON.stringify(body) })
  .then((r) => { if (!r.ok) throw new Error(p + ' ' + r.status); });
if (action === 'present') await post('/set-txt', { host: fqdn, value });
else if (action === 'cleanup') await post('/clear-txt', { host: fqdn });
else { console.error('unknown action ' + action); process.exit(2); }
`,
  );
  await chmod(file, 0o755);
  return file;
}

/** A hook that succeeds and does nothing: the record never appears. */
export async function silentHook(t: Test): Promise<string> {
  const dir = await tempDir(t, 'qt-hook-');
  const file = path.join(dir, 'hook.sh');
  await writeFile(file, '#!/bin/sh\nexit 0\n');
  await chmod(file, 0o755);
  return file;
}

export interface Named {
  /** `127.0.0.1:PORT` (UDP and TCP). */
  server: string;
  port: number;
  zone: string;
  keyName: string;
  secret: string;
}

/**
 * A real BIND `named`, primary for `zone`, that accepts dynamic updates signed with the
 * TSIG key `acme-key` (hmac-sha256) for TXT records at `_acme-challenge.<updatable>` only.
 */
export async function startNamed(
  t: Test,
  options: { zone: string; updatable: string },
): Promise<Named> {
  const dir = await tempDir(t, 'qt-named-');
  const { stdout } = await run('tsig-keygen', ['-a', 'hmac-sha256', 'acme-key']);
  const secret = /secret "([^"]+)"/.exec(stdout)?.[1];
  if (secret === undefined) throw new Error(`tsig-keygen printed no secret:\n${stdout}`);
  const port = await freePort();
  const zone = options.zone;
  await writeFile(
    path.join(dir, 'zone.db'),
    `$TTL 60
@ IN SOA ns.${zone}. admin.${zone}. 1 60 60 600 1
@ IN NS ns.${zone}.
ns IN A 127.0.0.1
`,
  );
  await writeFile(
    path.join(dir, 'named.conf'),
    `options {
  directory "${dir}";
  pid-file "${dir}/named.pid";
  session-keyfile "${dir}/session.key";
  listen-on port ${port} { 127.0.0.1; };
  listen-on-v6 { none; };
  recursion no;
  notify no;
  dnssec-validation no;
};
controls { };
${stdout}
zone "${zone}" {
  type primary;
  file "${dir}/zone.db";
  update-policy { grant acme-key name _acme-challenge.${options.updatable}. TXT; };
};
`,
  );
  await startProcess(
    t,
    'named',
    ['-g', '-n', '1', '-c', path.join(dir, 'named.conf'), '-p', String(port)],
    /running/,
  );
  // "running" comes before named listens: wait until it answers for the zone.
  for (let i = 0; ; i++) {
    const { stdout: soa } = await run('dig', [
      '@127.0.0.1',
      '-p',
      String(port),
      '+short',
      '+tries=1',
      '+time=1',
      'SOA',
      zone,
    ]).catch(() => ({ stdout: '' }));
    if (soa.includes(`ns.${zone}.`)) break;
    if (i === 50) throw new Error(`named on port ${port} never answered for ${zone}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return { server: `127.0.0.1:${port}`, port, zone, keyName: 'acme-key', secret };
}

/** The TXT values at `name`, asked of `server` with dig. */
export async function digTxt(server: string, name: string): Promise<string[]> {
  const [host, port] = server.split(':');
  const { stdout } = await run('dig', [`@${host}`, '-p', port ?? '53', '+short', 'TXT', name]);
  return stdout
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => l.replace(/^"|"$/g, ''));
}
