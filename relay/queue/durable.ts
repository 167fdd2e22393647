/**
 * Crash-safe file writes for the queue: a file is written whole to a temp name,
 * fsync'd, renamed into place and its directory fsync'd, so a crash or a full disk
 * leaves the old state or the new one, never a torn file.
 */
import { randomUUID } from 'node:crypto';
import { open, rename, rm } from 'node:fs/promises';

/** Suffix of temp files; a crash can leave them behind, and loading removes them. */
export const TMP_EXT = '.tmp';

/** Writes `data` to `file` (in `dir`) durably: temp file, fsync, rename, directory fsync. */
export async function writeDurably(dir: string, file: string, data: Buffer): Promise<void> {
  const tmp = `${file}.${process.pid}.${randomUUID().slice(0, 8)}${TMP_EXT}`;
  try {
    const fh = await open(tmp, 'wx', 0o600);
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true }).catch(() => {});
    throw err;
  }
  await syncDir(dir);
}

/** Makes renames and unlinks in `dir` durable (best effort where a platform can't). */
export async function syncDir(dir: string): Promise<void> {
  let dh;
  try {
    dh = await open(dir, 'r');
  } catch {
    return;
  }
  try {
    await dh.sync();
  } catch {
    // Windows cannot fsync a directory: the file data is synced already.
  } finally {
    await dh.close();
  }
}
