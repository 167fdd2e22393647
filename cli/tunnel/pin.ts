/**
 * `--ca-fingerprint SHA256:…`: trust a relay's certificate by its SHA-256 fingerprint
 * (what the relay prints at start) instead of copying its certificate file around.
 *
 * How: one TLS handshake that does not verify, only to read the certificate the relay
 * presents; if its fingerprint is the pinned one, that certificate becomes the CA the
 * real connections verify against as usual (chain and host name), so a server that
 * shows the pinned certificate without its key still fails. Nothing secret is sent on
 * the unverified connection (the TLS handshake only, no HTTP request). A relay whose
 * certificate is signed by a public CA needs no pin; a pin given for it is still checked.
 */
import { X509Certificate } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { QuickTunnelError } from '../../shared/errors.js';
import { formatFingerprint } from '../../shared/fingerprint.js';
import { describeDialError, localhostAwareLookup } from './client.js';
import { connectThroughProxy } from './proxy.js';
import { readCaFile, type RelaySettings } from '../config.js';

/**
 * Connects to `relay` (directly, or through the HTTP `proxy`), reads its certificate
 * and checks it against `fingerprint`. Returns the certificate (PEM) to use as the CA
 * when it is self-signed, undefined when it is issued by a CA (the usual verification
 * applies). `from` names where the pin came from, for the error.
 */
export async function pinnedRelayCa(
  relay: URL,
  fingerprint: string,
  from: string,
  proxy?: URL,
): Promise<string | undefined> {
  if (relay.protocol !== 'https:') return undefined;
  const cert = await peerCertificate(relay, proxy);
  const seen = cert.fingerprint256.toUpperCase();
  if (seen !== fingerprint) {
    throw new QuickTunnelError(
      'QT_ERR_TLS',
      `the relay ${relay.host} presented a certificate with fingerprint ${formatFingerprint(seen)}, ` +
        `not the ${formatFingerprint(fingerprint)} pinned by ${from}: either the relay has a new ` +
        'certificate (check what it printed at start and pin that), or something on the network ' +
        'path is intercepting the connection',
      { retryable: false },
    );
  }
  return cert.issuer === cert.subject ? cert.toString() : undefined;
}

async function peerCertificate(relay: URL, proxy?: URL): Promise<X509Certificate> {
  const host = relay.hostname.replace(/^\[|\]$/g, '');
  const port = relay.port === '' ? 443 : Number(relay.port);
  const socket =
    proxy === undefined
      ? undefined
      : ((await connectThroughProxy(proxy, host, port)) as net.Socket);
  return new Promise((resolve, reject) => {
    const options: tls.ConnectionOptions = {
      rejectUnauthorized: false, // only reading the certificate; verified by fingerprint
      ALPNProtocols: ['http/1.1'],
    };
    if (!net.isIP(host)) options.servername = host;
    if (socket !== undefined) options.socket = socket;
    else Object.assign(options, { host, port, lookup: localhostAwareLookup });
    const conn = tls.connect(options);
    conn.setTimeout(10_000, () => conn.destroy(new Error('the TLS handshake timed out')));
    conn.once('secureConnect', () => {
      const raw = conn.getPeerCertificate().raw;
      conn.destroy();
      if (raw === undefined) {
        reject(
          new QuickTunnelError('QT_ERR_TLS', `${relay.host} presented no certificate`, {
            retryable: false,
          }),
        );
      } else resolve(new X509Certificate(raw));
    });
    conn.once('error', (err) => reject(describeDialError(err, relay.host)));
  });
}

/**
 * The CA (PEM) to trust for `relay`: the `--ca` file and/or the certificate pinned by
 * `--ca-fingerprint` (checked against the relay now); undefined for the system CAs.
 */
export async function relayCa(
  settings: Pick<RelaySettings, 'caFile' | 'caFingerprint' | 'from'>,
  relay: URL,
  proxy?: URL,
): Promise<string | undefined> {
  const fromFile = await readCaFile(settings.caFile, settings.from.caFile);
  const pinned =
    settings.caFingerprint === undefined
      ? undefined
      : await pinnedRelayCa(
          relay,
          settings.caFingerprint,
          settings.from.caFingerprint ?? '--ca-fingerprint',
          proxy,
        );
  if (fromFile !== undefined && pinned !== undefined) return `${fromFile}\n${pinned}`;
  return fromFile ?? pinned;
}
