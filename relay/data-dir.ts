/**
 * The relay's data dir: private (mode 0700, also when it already existed with another
 * mode), and used by one relay at a time. A lock file `relay.lock` holds the pid of the
 * relay using it; a second relay on the same dir is refused with a clear error, and a
 * lock left by a relay that died (its pid is gone) is taken over. Also keeps the key that
 * signs resume tokens (`resume.key`), so tunnels resume their hostnames across restarts.
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, open, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ConfigError } from '../shared/errors.js';

export const LOCK_FILE = 'relay.lock';

/** Data dirs this process holds (a pid equal to ours is only ours if listed here). */
const held = new Set<string>();

export interface DataDirLock {
  readonly file: string;
  release(): Promise<void>;
}

/** Creates `dir` (0700), sets its mode to 0700 and takes its lock. */
export async function lockDataDir(dir: string): Promise<DataDirLock> {
  const resolved = path.resolve(dir);
  await mkdir(resolved, { recursive: true, mode: 0o700 });
  await chmod(resolved, 0o700);
  const file = path.join(resolved, LOCK_FILE);
  for (let attempt = 0; ; attempt++) {
    try {
      const fh = await open(file, 'wx', 0o600);
      try {
        await fh.writeFile(`${process.pid}\n`);
      } finally {
        await fh.close();
      }
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw err;
    }
    const pid = Number.parseInt((await readFile(file, 'utf8').catch(() => '')).trim(), 10);
    const ours = pid === process.pid && held.has(resolved);
    if (Number.isInteger(pid) && pid > 0 && (ours || (pid !== process.pid && alive(pid)))) {
      throw new ConfigError(
        `another relay (pid ${pid}) is using the data dir ${resolved}: stop it first, or give this one its own --data-dir`,
      );
    }
    // A stale lock (its relay is gone): take it over.
    await writeFile(file, `${process.pid}\n`, { mode: 0o600 });
    break;
  }
  held.add(resolved);
  let released = false;
  return {
    file,
    async release() {
      if (released) return;
      released = true;
      held.delete(resolved);
      await rm(file, { force: true });
    },
  };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * The relay's resume-token key from `<dataDir>/resume.key`, made (32 random bytes, mode
 * 0600, written atomically) on first start. `existed`: the relay restarted on this dir.
 */
export async function loadOrCreateKey(dataDir: string): Promise<{ key: Buffer; existed: boolean }> {
  const file = path.join(dataDir, 'resume.key');
  try {
    const key = await readFile(file);
    if (key.length >= 32) return { key, existed: true };
  } catch {
    // first start: create it below
  }
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const key = randomBytes(32);
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, key, { mode: 0o600 });
  await rename(tmp, file);
  return { key, existed: false };
}
