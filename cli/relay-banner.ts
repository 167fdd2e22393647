/**
 * What `quick-tunnel relay` prints for its operator: a client command that works as
 * printed (the relay's URL with its port, the certificate pin for a self-signed relay, the
 * token). Tokens are printed only when the operator asks (`--print-token`); otherwise the
 * command says where the token goes.
 */
import { formatFingerprint } from '../shared/fingerprint.js';

export interface BannerInput {
  domain: string;
  /** The HTTPS port clients connect to (the public one behind NAT). */
  httpsPort: number;
  /** SHA-256 of the certificate when it is self-signed (clients pin it), else undefined. */
  selfSignedFingerprint: string | undefined;
  /** Client tokens; empty = open relay. */
  tokens: readonly string[];
  printToken: boolean;
}

/** `https://DOMAIN[:PORT]` as clients pass it to --relay. */
export function relayUrl(domain: string, httpsPort: number): string {
  return `https://${domain}${httpsPort === 443 ? '' : `:${httpsPort}`}`;
}

/** The lines that tell a client how to connect. */
export function connectLines(b: BannerInput): string[] {
  const parts = [`--relay ${relayUrl(b.domain, b.httpsPort)}`];
  if (b.selfSignedFingerprint !== undefined) {
    parts.push(`--ca-fingerprint ${formatFingerprint(b.selfSignedFingerprint)}`);
  }
  const hidden = b.tokens.length > 0 && !b.printToken;
  if (b.tokens.length > 0) parts.push(`--token ${b.printToken ? b.tokens[0]! : 'TOKEN'}`);
  const flags = parts.join(' ');
  const lines = [
    '  connect a laptop (checks the relay and token, then saves them; after that `quick-tunnel 3000` uses this relay):',
    `    quick-tunnel login ${flags}`,
    '  or for one run:',
    `    quick-tunnel 3000 ${flags}`,
  ];
  if (hidden) {
    lines.push(
      "  TOKEN: one of this relay's --token values (not printed; add --print-token to print the command with it)",
    );
  }
  return lines;
}
