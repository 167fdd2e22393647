/**
 * The relay's TLS certificate: from `--cert/--key`, or a self-signed one for DOMAIN and
 * *.DOMAIN generated once and kept in the data dir, so clients can pin it with `--ca`.
 */
import { X509Certificate } from 'node:crypto';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { reapplyGarbageCollectorTuning } from '../../shared/runtime.js';

export interface CertificatePair {
  cert: string;
  key: string;
}

export interface RelayCertificate extends CertificatePair {
  /** Where the certificate lives on disk (undefined if it came from memory). */
  certPath: string | undefined;
  /** SHA-256 fingerprint, colon-separated hex, as browsers and openssl print it. */
  fingerprint256: string;
  selfSigned: boolean;
}

/**
 * Runs in a worker thread: the certificate library (node-forge inside) is large, and
 * loaded into the relay it would stay in its heap for good (a first start measured
 * 74 MiB RSS that way, 69 MiB with the worker) and make full GCs under traffic longer.
 * The worker's heap goes away when it exits.
 */
const GENERATOR_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { generate } = require(workerData.modulePath);
Promise.resolve()
  .then(() => generate(workerData.attributes, workerData.options))
  .then(
    (pems) => parentPort.postMessage({ cert: pems.cert, key: pems.private }),
    (err) => parentPort.postMessage({ error: String((err && err.stack) || err) }),
  );
`;

/**
 * Makes a self-signed EC P-256 certificate for `domain` and `*.domain`, valid 10 years;
 * `ips` adds IP addresses (the node URLs of a cluster's relays, in tests).
 */
export async function generateCertificate(
  domain: string,
  ips: readonly string[] = [],
): Promise<CertificatePair> {
  const notAfter = new Date();
  notAfter.setFullYear(notAfter.getFullYear() + 10);
  const altNames: { type: number; value?: string; ip?: string }[] = [
    { type: 2, value: domain },
    { type: 2, value: `*.${domain}` },
  ];
  if (domain === 'localhost') altNames.push({ type: 7, ip: '127.0.0.1' }, { type: 7, ip: '::1' });
  for (const ip of ips) altNames.push({ type: 7, ip });
  const options = {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    notAfterDate: notAfter,
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames },
    ],
  };
  const worker = new Worker(GENERATOR_SOURCE, {
    eval: true,
    execArgv: [], // plain CommonJS: no loaders needed
    workerData: {
      modulePath: createRequire(import.meta.url).resolve('selfsigned'),
      attributes: [{ name: 'commonName', value: domain }],
      options,
    },
  });
  // A starting worker resets runtime-set V8 flags in the whole process (shared/runtime.ts).
  worker.once('online', reapplyGarbageCollectorTuning);
  const result = await new Promise<{ cert?: string; key?: string; error?: string }>(
    (resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
      worker.once('exit', (code) =>
        reject(new Error(`certificate generator exited (code ${code}) without a result`)),
      );
    },
  );
  await worker.terminate();
  reapplyGarbageCollectorTuning();
  if (result.cert === undefined || result.key === undefined) {
    throw new Error(`could not generate a self-signed certificate: ${result.error ?? 'no result'}`);
  }
  return { cert: result.cert, key: result.key };
}

/**
 * Loads `certFile`/`keyFile` if given; otherwise the self-signed pair in
 * `dataDir/tls/`, creating it on first start (written atomically, key mode 0600).
 */
export async function loadRelayCertificate(options: {
  domain: string;
  dataDir: string;
  certFile?: string | undefined;
  keyFile?: string | undefined;
}): Promise<RelayCertificate> {
  if (options.certFile !== undefined && options.keyFile !== undefined) {
    const [cert, key] = await Promise.all([
      readFile(options.certFile, 'utf8'),
      readFile(options.keyFile, 'utf8'),
    ]);
    return {
      cert,
      key,
      certPath: options.certFile,
      fingerprint256: new X509Certificate(cert).fingerprint256,
      selfSigned: false,
    };
  }
  const dir = path.join(options.dataDir, 'tls');
  const safe = options.domain.replace(/[^a-z0-9.-]/gi, '_');
  const certPath = path.join(dir, `${safe}.crt`);
  const keyPath = path.join(dir, `${safe}.key`);
  let pair: CertificatePair;
  try {
    pair = { cert: await readFile(certPath, 'utf8'), key: await readFile(keyPath, 'utf8') };
  } catch {
    pair = await generateCertificate(options.domain);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await writeAtomic(keyPath, pair.key, 0o600);
    await writeAtomic(certPath, pair.cert, 0o644);
  }
  return {
    ...pair,
    certPath,
    fingerprint256: new X509Certificate(pair.cert).fingerprint256,
    selfSigned: true,
  };
}

async function writeAtomic(file: string, data: string, mode: number): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, data, { mode });
  await rename(tmp, file);
}
