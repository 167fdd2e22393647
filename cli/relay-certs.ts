/**
 * `quick-tunnel relay --cert FILE --key FILE`: checks the pair before the relay starts, so
 * each mistake gets its own message: a file the relay's user cannot read (the Docker
 * image runs as `node`; Let's Encrypt keys are root-only), the two swapped, a key that is
 * not the certificate's, or a certificate that does not cover DOMAIN and *.DOMAIN (a
 * warning naming what it does cover).
 */
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import os from 'node:os';
import { ConfigError } from '../shared/errors.js';

async function readPem(file: string, flag: '--cert' | '--key'): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EACCES' || code === 'EPERM') {
      const info = await stat(file).catch(() => undefined);
      const mode =
        info === undefined
          ? ''
          : ` (mode ${(info.mode & 0o777).toString(8).padStart(4, '0')}, owner uid ${info.uid})`;
      const uid = typeof process.getuid === 'function' ? process.getuid() : undefined;
      const user = os.userInfo().username;
      throw new ConfigError(
        `${flag} ${file}: permission denied: the relay runs as ${user}${uid === undefined ? '' : ` (uid ${uid})`} and cannot read it${mode}`,
        {
          cause: err,
          hint:
            "make the file readable by the relay's user, e.g. copy it for the relay: " +
            `\`sudo install -o ${uid ?? user} -m 0600 ${file} /etc/quick-tunnel/${flag === '--key' ? 'key' : 'cert'}.pem\` ` +
            '(a certbot deploy hook can do that at each renewal). In Docker the image runs as user ' +
            '`node` (uid 1000): give uid 1000 read access to the mounted files, or run the ' +
            'container with --user root',
        },
      );
    }
    if (code === 'ENOENT') throw new ConfigError(`${flag} ${file}: no such file`, { cause: err });
    if (code === 'EISDIR') {
      throw new ConfigError(`${flag} ${file} is a directory: give the PEM file in it`, {
        cause: err,
      });
    }
    throw new ConfigError(`${flag} ${file}: ${(err as Error).message}`, { cause: err });
  }
}

const HAS_CERT = /-----BEGIN CERTIFICATE-----/;
const HAS_KEY = /-----BEGIN [A-Z ]*PRIVATE KEY-----/;

/** What the certificate covers, for messages: its DNS names (or its subject). */
export function coveredNames(cert: X509Certificate): string[] {
  const names = (cert.subjectAltName ?? '')
    .split(/,\s*/)
    .filter((n) => n.startsWith('DNS:') || n.startsWith('IP Address:'))
    .map((n) => n.replace(/^DNS:|^IP Address:/, ''));
  if (names.length > 0) return names;
  const cn = /CN=([^\n,]+)/.exec(cert.subject)?.[1];
  return cn === undefined ? [] : [cn];
}

/**
 * Reads and checks `--cert` and `--key`. Throws a ConfigError for what stops the relay;
 * returns warnings (a certificate that does not cover DOMAIN and *.DOMAIN).
 */
export async function checkCertificateFiles(
  certFile: string,
  keyFile: string,
  domain: string,
): Promise<string[]> {
  const [certText, keyText] = [await readPem(certFile, '--cert'), await readPem(keyFile, '--key')];
  if (!HAS_CERT.test(certText) && HAS_KEY.test(certText) && HAS_CERT.test(keyText)) {
    throw new ConfigError(
      `--cert and --key are swapped: ${certFile} holds a private key and ${keyFile} a certificate`,
      { hint: `pass --cert ${keyFile} --key ${certFile}` },
    );
  }
  if (!HAS_CERT.test(certText)) {
    throw new ConfigError(
      `--cert ${certFile} holds no PEM certificate (-----BEGIN CERTIFICATE-----)${HAS_KEY.test(certText) ? ': it is a private key' : ''}`,
      { hint: "with Let's Encrypt, --cert is fullchain.pem and --key is privkey.pem" },
    );
  }
  if (!HAS_KEY.test(keyText)) {
    throw new ConfigError(
      `--key ${keyFile} holds no PEM private key (-----BEGIN … PRIVATE KEY-----)${HAS_CERT.test(keyText) ? ': it is a certificate' : ''}`,
      { hint: "with Let's Encrypt, --cert is fullchain.pem and --key is privkey.pem" },
    );
  }
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certText);
  } catch (err) {
    throw new ConfigError(`--cert ${certFile} does not parse: ${(err as Error).message}`, {
      cause: err,
    });
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(keyText);
  } catch (err) {
    throw new ConfigError(
      `--key ${keyFile} does not parse: ${(err as Error).message} (an encrypted key is not supported: decrypt it first)`,
      { cause: err },
    );
  }
  if (!cert.checkPrivateKey(key)) {
    throw new ConfigError(
      `--key ${keyFile} is not the private key of the certificate in ${certFile}`,
      {
        hint: 'give the key that was generated with this certificate (same certbot lineage)',
      },
    );
  }
  const missing = [domain, `*.${domain}`].filter(
    (name) => cert.checkHost(name.replace('*', 'qt-probe')) === undefined,
  );
  if (missing.length === 0) return [];
  return [
    `the certificate in ${certFile} does not cover ${missing.join(' and ')}: it covers ` +
      `${coveredNames(cert).join(', ') || 'no host name'}. Visitors and clients will get certificate errors ` +
      `for ${missing.includes(domain) ? 'the relay itself' : 'every tunnel'}; get one for ${domain} and *.${domain}.`,
  ];
}
