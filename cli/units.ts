/**
 * Sizes and durations as people type them in flags: `1MiB`, `512k`, `2G`, `1048576`;
 * `72h`, `30m`, `45s`, `500ms`, `3d`, `90` (seconds).
 */
import { ConfigError } from '../shared/errors.js';

const SIZE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
  gib: 1024 ** 3,
};

/** Bytes in `text` (binary units: 1k = 1024). Throws a ConfigError naming `flag`. */
export function parseSize(text: string | number, flag: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(String(text));
  const unit = SIZE_UNITS[(m?.[2] ?? '').toLowerCase()];
  if (m === null || unit === undefined) {
    throw new ConfigError(
      `${flag} must be a size like 1048576, 512KiB, 1MiB or 2GiB, got '${text}'`,
    );
  }
  return Math.floor(Number(m[1]) * unit);
}

const DURATION_UNITS: Record<string, number> = {
  '': 1000,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

/** Milliseconds in `text` (a bare number is seconds). Throws a ConfigError naming `flag`. */
export function parseDuration(text: string | number, flag: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/i.exec(String(text));
  if (m === null) {
    throw new ConfigError(
      `${flag} must be a duration like 90 (seconds), 30s, 15m, 72h or 3d, got '${text}'`,
    );
  }
  return Math.round(Number(m[1]) * (DURATION_UNITS[(m[2] ?? '').toLowerCase()] ?? 1000));
}
