/**
 * A self-signed EC certificate for `qt.localhost` and `*.qt.localhost`, made once per
 * test process (three labels: TLS clients refuse a wildcard right under `localhost`).
 */
import { generateCertificate, type CertificatePair } from '../../relay/edge/certificate.js';

export const TEST_DOMAIN = 'qt.localhost';

let cached: Promise<CertificatePair> | undefined;

export function testCertificate(): Promise<CertificatePair> {
  cached ??= generateCertificate(TEST_DOMAIN);
  return cached;
}
