/**
 * SHA-256 certificate fingerprints as the relay prints them and `--ca-fingerprint`
 * takes them: `SHA256:AB:CD:…` (the colon-separated hex openssl and browsers show).
 */
import { ConfigError } from './errors.js';

/**
 * Normalises a fingerprint as the relay prints it (`SHA256:AB:CD:…`), also accepting
 * it without the prefix, without colons, or in lower case. Returns colon-separated
 * upper-case hex, as `X509Certificate.fingerprint256` gives it.
 */
export function parseFingerprint(input: string, from = '--ca-fingerprint'): string {
  let text = input.trim();
  const prefixed = /^sha-?256[:=]/i.test(text);
  if (prefixed) text = text.replace(/^sha-?256[:=]/i, '');
  let hex = text.replace(/[:\s]/g, '').toUpperCase();
  // SSH-style base64 after the prefix (`SHA256:q83vEjRW…`).
  if (!/^[0-9A-F]{64}$/.test(hex) && prefixed && /^[A-Za-z0-9+/]{43}=?$/.test(text)) {
    hex = Buffer.from(text, 'base64').toString('hex').toUpperCase();
  }
  if (!/^[0-9A-F]{64}$/.test(hex)) {
    throw new ConfigError(
      `${from} '${input}' is not a SHA-256 fingerprint: use the SHA256:AB:CD:… value the relay prints at start (64 hex digits)`,
    );
  }
  return hex.match(/../g)!.join(':');
}

/** How a fingerprint is shown: `SHA256:AB:CD:…`. */
export function formatFingerprint(fingerprint256: string): string {
  return `SHA256:${fingerprint256.toUpperCase()}`;
}
