/**
 * Where the relay keeps its ACME state: `<data dir>/acme/` (mode 0700), the account key
 * and, per domain, the certificate chain, its key and where it came from, each file
 * mode 0600 and written atomically (a crash never leaves half a key). Also reads a PEM
 * chain back into what the manager needs (validity, issuer).
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { CertificatePem } from './manager.js';

/** A certificate that covers DOMAIN and *.DOMAIN, with its validity and issuer. */
export interface Loaded extends CertificatePem {
  notBeforeMs: number;
  notAfterMs: number;
  issuer: string;
}

/** What is stored next to the certificate. */
export interface CertificateMeta {
  /** The ACME directory it came from. */
  directoryUrl?: string;
  obtainedAt?: string;
}

export class AcmeFiles {
  readonly dir: string;
  readonly certPath: string;
  private readonly keyPath: string;
  private readonly metaPath: string;
  private readonly accountKeyPath: string;

  constructor(dataDir: string, domain: string) {
    this.dir = path.join(dataDir, 'acme');
    const safe = domain.replace(/[^a-z0-9.-]/gi, '_');
    this.certPath = path.join(this.dir, `${safe}.crt`);
    this.keyPath = path.join(this.dir, `${safe}.key`);
    this.metaPath = path.join(this.dir, `${safe}.json`);
    this.accountKeyPath = path.join(this.dir, 'account.key');
  }

  /** The ACME account key, made with `create` and kept on first use. */
  async accountKey(create: () => Promise<Buffer>): Promise<Buffer> {
    try {
      return await readFile(this.accountKeyPath);
    } catch {
      const key = await create();
      await mkdir(this.dir, { recursive: true, mode: 0o700 });
      await writeAtomic(this.accountKeyPath, key, 0o600);
      return key;
    }
  }

  /** The stored certificate and key (undefined when there are none), and their metadata. */
  async read(): Promise<{ pem: CertificatePem; meta: CertificateMeta } | undefined> {
    let pem: CertificatePem;
    let meta: CertificateMeta = {};
    try {
      pem = {
        cert: await readFile(this.certPath, 'utf8'),
        key: await readFile(this.keyPath, 'utf8'),
      };
    } catch {
      return undefined;
    }
    try {
      meta = JSON.parse(await readFile(this.metaPath, 'utf8')) as CertificateMeta;
    } catch {
      // no metadata: trust the files
    }
    return { pem, meta };
  }

  async write(pem: CertificatePem, meta: CertificateMeta): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    await writeAtomic(this.keyPath, pem.key, 0o600);
    await writeAtomic(this.certPath, pem.cert, 0o600);
    await writeAtomic(this.metaPath, `${JSON.stringify(meta)}\n`, 0o600);
  }
}

/** The leaf of a PEM chain, if it covers DOMAIN and *.DOMAIN and matches the key. */
export function parseCertificate(pem: CertificatePem, domain: string): Loaded | undefined {
  try {
    const leaf = new X509Certificate(pem.cert);
    if (leaf.checkHost(domain) === undefined) return undefined;
    if (leaf.checkHost(`x.${domain}`, { wildcards: true }) === undefined) return undefined;
    if (!leaf.checkPrivateKey(createPrivateKey(pem.key))) return undefined;
    const cn = /CN=([^\n,]+)/.exec(leaf.issuer)?.[1] ?? leaf.issuer;
    return {
      ...pem,
      notBeforeMs: Date.parse(leaf.validFrom),
      notAfterMs: Date.parse(leaf.validTo),
      issuer: cn,
    };
  } catch {
    return undefined;
  }
}

async function writeAtomic(file: string, data: string | Buffer, mode: number): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, data, { mode });
  await rename(tmp, file);
}
