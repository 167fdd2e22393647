/**
 * A program under a real pseudo-terminal: a detached tmux session on its own server
 * socket (`tmux -L`), so tests and benchmarks can type keys, read the screen, resize
 * the window and see how the program left the terminal. The pane runs a small shell
 * script that records the terminal settings before and after the program, its exit
 * status, and signals a tmux channel when the program is over (awaited, not polled).
 *
 * No tap dependency: the caller kills the server when done (`kill()`).
 */
import { execFile, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The tmux version, or undefined when tmux is not installed. */
export function tmuxVersion(): string | undefined {
  const r = spawnSync('tmux', ['-V'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

/** POSIX shell quoting. */
export function sq(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** What the pane printed before the program started: found again once it is over. */
export const BEFORE_MARKER = 'qt-before-the-program';

export interface TmuxOptions {
  /** Argument vector of the program. */
  argv: string[];
  cwd: string;
  /** Environment of the tmux server, hence of the program (CI vars are removed). */
  env: NodeJS.ProcessEnv;
  /** Directory for the status files. */
  dir: string;
  width: number;
  height: number;
}

export class TmuxPane {
  readonly socket = `qt-${process.pid}-${randomBytes(4).toString('hex')}`;
  readonly channel = 'qt-program-done';
  readonly files: { status: string; sttyBefore: string; sttyAfter: string; pid: string };
  private killed = false;

  private constructor(readonly options: TmuxOptions) {
    this.files = {
      status: path.join(options.dir, 'status'),
      sttyBefore: path.join(options.dir, 'stty-before'),
      sttyAfter: path.join(options.dir, 'stty-after'),
      pid: path.join(options.dir, 'pid'),
    };
  }

  /** Starts the session; the program runs at once. */
  static async start(options: TmuxOptions): Promise<TmuxPane> {
    const pane = new TmuxPane(options);
    const f = pane.files;
    const tmux = `tmux -L ${pane.socket}`;
    // `exec` keeps the program's pid the one written to the pid file (for /proc).
    const script = [
      `cd ${sq(options.cwd)}`,
      `stty -g > ${sq(f.sttyBefore)}`,
      `echo ${BEFORE_MARKER}`,
      `sh -c 'echo $$ > ${f.pid}; exec "$@"' program ${options.argv.map(sq).join(' ')}`,
      `echo $? > ${sq(f.status)}`,
      `stty -g > ${sq(f.sttyAfter)}`,
      `${tmux} wait-for -S ${pane.channel}`,
      // Keep the pane (and its screen) until the test kills the server.
      'exec cat',
    ].join('; ');
    const env: NodeJS.ProcessEnv = { ...options.env };
    // Ink draws nothing live under CI; the program must see a plain terminal.
    delete env['CI'];
    delete env['CONTINUOUS_INTEGRATION'];
    delete env['TMUX'];
    env['TERM'] = 'xterm-256color';
    await run(
      'tmux',
      [
        '-L',
        pane.socket,
        '-f',
        '/dev/null',
        'new-session',
        '-d',
        '-x',
        String(options.width),
        '-y',
        String(options.height),
        'sh',
        '-c',
        script,
      ],
      { env },
    );
    return pane;
  }

  async tmux(...args: string[]): Promise<string> {
    const { stdout } = await run('tmux', ['-L', this.socket, ...args]);
    return stdout;
  }

  /** The visible screen, one string per line (trailing blanks trimmed). */
  async screen(): Promise<string> {
    return (await this.tmux('capture-pane', '-p')).replace(/\s+$/, '');
  }

  /**
   * Polls the screen until `re` matches (the terminal has no event to await) and
   * returns it; fails with the last screen after `timeoutMs`.
   */
  async waitForScreen(re: RegExp, timeoutMs = 20_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    while (Date.now() < deadline) {
      last = await this.screen();
      if (re.test(last)) return last;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`the screen never matched ${re}; it shows:\n${last}`);
  }

  /** Types keys (tmux key names such as Up, Enter, Escape, or literal text). */
  async keys(...keys: string[]): Promise<void> {
    await this.tmux('send-keys', ...keys);
  }

  async resize(width: number, height: number): Promise<void> {
    await this.tmux('resize-window', '-x', String(width), '-y', String(height));
  }

  /** A tmux format value of the pane, e.g. `#{alternate_on}`. */
  async format(fmt: string): Promise<string> {
    return (await this.tmux('display-message', '-p', fmt)).trim();
  }

  /** The program's pid (for /proc), once it started. */
  async pid(): Promise<number> {
    for (;;) {
      const text = await readFile(this.files.pid, 'utf8').catch(() => '');
      if (text.trim() !== '') return Number(text.trim());
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Resolves when the program is over, with its exit status and the stty settings. */
  async exited(): Promise<{ status: number; sttyBefore: string; sttyAfter: string }> {
    await this.tmux('wait-for', this.channel);
    const read = (p: string): Promise<string> => readFile(p, 'utf8').then((s) => s.trim());
    return {
      status: Number(await read(this.files.status)),
      sttyBefore: await read(this.files.sttyBefore),
      sttyAfter: await read(this.files.sttyAfter),
    };
  }

  /** Kills the tmux server (and with it the pane and anything still running). */
  async kill(): Promise<void> {
    if (this.killed) return;
    this.killed = true;
    await run('tmux', ['-L', this.socket, 'kill-server']).catch(() => {});
  }
}
