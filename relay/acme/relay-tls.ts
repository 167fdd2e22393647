/**
 * The relay side of ACME mode: the HTTPS listener starts without a certificate (TLS
 * handshakes fail until one exists: never a silent self-signed one), and every
 * certificate the manager obtains or loads is swapped in with `setSecureContext`, which
 * applies to new connections only: those already open keep theirs.
 */
import type https from 'node:https';
import type { SecureContextOptions } from 'node:tls';
import type { Logger } from 'pino';
import { AcmeManager, type AcmeSettings } from './manager.js';

export async function startRelayAcme(options: {
  settings: AcmeSettings;
  domain: string;
  dataDir: string | null;
  log: Logger;
  server: https.Server | undefined;
  /** TLS options kept on every swap (minVersion…). */
  tls: SecureContextOptions;
}): Promise<AcmeManager> {
  if (options.dataDir === null) {
    throw new Error('ACME mode needs a data dir for the certificate and the account key');
  }
  const manager = new AcmeManager({
    ...options.settings,
    domain: options.domain,
    dataDir: options.dataDir,
    log: options.log,
    onCertificate: ({ cert, key }) =>
      options.server?.setSecureContext({ ...options.tls, cert, key }),
  });
  await manager.start();
  return manager;
}
