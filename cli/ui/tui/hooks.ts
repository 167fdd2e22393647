/**
 * React hooks of the TUI: a redraw clock throttled to a frame rate (the store changes
 * thousands of times a second under load; the screen follows at most `frameMs`
 * apart), a slow tick for uptime and countdowns, and the terminal size with resizes.
 */
import { useEffect, useState } from 'react';
import { useStdout } from 'ink';
import type { TuiStore } from './store.js';

/**
 * Re-renders when the store changed, at most once per `frameMs` (0 = at once): returns
 * the store version drawn.
 */
export function useStoreVersion(store: TuiStore, frameMs: number): number {
  const [version, setVersion] = useState(store.version);
  useEffect(() => {
    let timer: NodeJS.Timeout | undefined;
    let last = 0;
    const flush = (): void => {
      timer = undefined;
      last = performance.now();
      setVersion(store.version);
    };
    const unsubscribe = store.subscribe(() => {
      if (timer !== undefined) return;
      if (frameMs <= 0) {
        flush();
        return;
      }
      timer = setTimeout(flush, Math.max(0, last + frameMs - performance.now()));
    });
    // Changes between the first render and this subscription.
    flush();
    return () => {
      unsubscribe();
      if (timer !== undefined) clearTimeout(timer);
    };
  }, [store, frameMs]);
  return version;
}

/** Re-renders every `ms` (uptime, countdowns, open durations); 0 = never. */
export function useTick(ms: number): number {
  const [n, setN] = useState(0);
  useEffect(() => {
    if (ms <= 0) return;
    const timer = setInterval(() => setN((x) => x + 1), ms);
    return () => clearInterval(timer);
  }, [ms]);
  return n;
}

/** Columns and rows of the terminal, following resizes; `override` wins (tests). */
export function useTerminalSize(override: {
  width?: number | undefined;
  height?: number | undefined;
}): {
  width: number;
  height: number;
} {
  const { stdout } = useStdout();
  const read = (): { width: number; height: number } => ({
    width: stdout.columns || 80,
    height: stdout.rows || 24,
  });
  const [size, setSize] = useState(read);
  useEffect(() => {
    const onResize = (): void => setSize(read());
    stdout.on('resize', onResize);
    return () => {
      stdout.off('resize', onResize);
    };
  }, [stdout]);
  return { width: override.width ?? size.width, height: override.height ?? size.height };
}
