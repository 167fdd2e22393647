/**
 * An `ssh -R` forward on loopback, for the e2e benchmark's baseline: a throwaway sshd
 * (Debian's OpenSSH, its own config, host key and user key in a temp dir, 127.0.0.1 on a
 * free port) and an `ssh -N -R` client that forwards a port on the sshd side to the
 * origin, as a developer would expose a laptop port through a VPS. The sshd side plays
 * the relay, the ssh client the CLI.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort, sleep } from './scale-support.js';

export interface SshForward {
  /** Port on 127.0.0.1 that reaches the origin through ssh. */
  port: number;
  /** The ssh client (the "CLI" side). */
  clientPid: number;
  /** sshd's processes now: the listener and the session's (the "relay" side). */
  serverPids(): Promise<number[]>;
  /** The negotiated cipher, as `ssh -v` reports it. */
  cipher: string;
  close(): Promise<void>;
}

const run = (file: string, args: string[]): Promise<string> =>
  new Promise((resolve, reject) =>
    execFile(file, args, (err, stdout, stderr) =>
      err ? reject(new Error(`${file}: ${stderr || err.message}`)) : resolve(stdout),
    ),
  );

/** A process and all its descendants, from /proc. */
async function processTree(pid: number): Promise<number[]> {
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    const p = out[i]!;
    try {
      const children = await readFile(`/proc/${p}/task/${p}/children`, 'utf8');
      for (const c of children.split(' ').filter(Boolean)) out.push(Number(c));
    } catch {
      // gone
    }
  }
  return out;
}

export async function startSshForward(originPort: number): Promise<SshForward> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'qt-bench-ssh-'));
  const children: ChildProcess[] = [];
  try {
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(dir, 'host_key')]);
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(dir, 'user_key')]);
    await writeFile(
      path.join(dir, 'authorized_keys'),
      await readFile(path.join(dir, 'user_key.pub')),
      { mode: 0o600 },
    );
    const sshPort = await freePort();
    const config = [
      `Port ${sshPort}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${path.join(dir, 'host_key')}`,
      `PidFile ${path.join(dir, 'sshd.pid')}`,
      `AuthorizedKeysFile ${path.join(dir, 'authorized_keys')}`,
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      'StrictModes no',
      'PermitRootLogin prohibit-password',
      'AllowTcpForwarding yes',
      'GatewayPorts no',
      'LogLevel ERROR',
    ].join('\n');
    await writeFile(path.join(dir, 'sshd_config'), `${config}\n`);
    // OpenSSH wants its privilege-separation directory to exist, even for a test daemon.
    await mkdir('/run/sshd', { recursive: true, mode: 0o755 }).catch(() => {});
    const sshd = spawn('/usr/sbin/sshd', ['-D', '-e', '-f', path.join(dir, 'sshd_config')], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    children.push(sshd);
    let sshdErr = '';
    sshd.stderr!.on('data', (c: Buffer) => (sshdErr += c.toString()));

    // sshd listens a moment after it starts: ssh must not dial before.
    const listenDeadline = performance.now() + 10_000;
    while (
      !(await new Promise<boolean>((resolve) => {
        const probe = net.connect({ host: '127.0.0.1', port: sshPort }, () => {
          probe.destroy();
          resolve(true);
        });
        probe.on('error', () => resolve(false));
      }))
    ) {
      if (performance.now() > listenDeadline || sshd.exitCode !== null) {
        throw new Error(`sshd did not start: ${sshdErr}`);
      }
      await sleep(50);
    }
    const port = await freePort();
    const user = os.userInfo().username;
    const ssh = spawn(
      'ssh',
      [
        '-v',
        '-N',
        '-T',
        '-i',
        path.join(dir, 'user_key'),
        '-o',
        'StrictHostKeyChecking=no',
        '-o',
        'UserKnownHostsFile=/dev/null',
        '-o',
        'BatchMode=yes',
        '-o',
        'ExitOnForwardFailure=yes',
        '-p',
        String(sshPort),
        '-R',
        `127.0.0.1:${port}:127.0.0.1:${originPort}`,
        `${user}@127.0.0.1`,
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    children.push(ssh);
    let sshErr = '';
    ssh.stderr!.on('data', (c: Buffer) => (sshErr += c.toString()));

    // Ready once a request through the forward answers.
    const deadline = performance.now() + 20_000;
    for (;;) {
      const ok = await new Promise<boolean>((resolve) => {
        const req = http.get({ host: '127.0.0.1', port, path: '/small', agent: false }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode === 200));
        });
        req.on('error', () => resolve(false));
      });
      if (ok) break;
      if (performance.now() > deadline || ssh.exitCode !== null || sshd.exitCode !== null) {
        throw new Error(`ssh -R did not come up:\n${sshdErr}\n${sshErr.slice(-2000)}`);
      }
      await sleep(100);
    }
    const cipher = /kex: server->client cipher: (\S+)/.exec(sshErr)?.[1] ?? 'unknown';
    return {
      port,
      clientPid: ssh.pid!,
      serverPids: () => processTree(sshd.pid!),
      cipher,
      async close() {
        for (const c of children) c.kill('SIGTERM');
        await Promise.all(
          children.map((c) =>
            c.exitCode === null && c.signalCode === null ? once(c, 'exit') : undefined,
          ),
        );
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    for (const c of children) c.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}
