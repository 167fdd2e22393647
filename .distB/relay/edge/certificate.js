/**
 * The relay's TLS certificate: from `--cert/--key`, or a self-signed one for DOMAIN and
 * *.DOMAIN generated once and kept in the data dir, so clients can pin it with `--ca`.
 */
import { X509Certificate } from 'node:crypto';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
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
/** Makes a self-signed EC P-256 certificate for `domain` and `*.domain`, valid 10 years. */
export async function generateCertificate(domain) {
    const notAfter = new Date();
    notAfter.setFullYear(notAfter.getFullYear() + 10);
    const altNames = [
        { type: 2, value: domain },
        { type: 2, value: `*.${domain}` },
    ];
    if (domain === 'localhost')
        altNames.push({ type: 7, ip: '127.0.0.1' }, { type: 7, ip: '::1' });
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
    const result = await new Promise((resolve, reject) => {
        worker.once('message', resolve);
        worker.once('error', reject);
        worker.once('exit', (code) => reject(new Error(`certificate generator exited (code ${code}) without a result`)));
    });
    await worker.terminate();
    if (result.cert === undefined || result.key === undefined) {
        throw new Error(`could not generate a self-signed certificate: ${result.error ?? 'no result'}`);
    }
    return { cert: result.cert, key: result.key };
}
/**
 * Loads `certFile`/`keyFile` if given; otherwise the self-signed pair in
 * `dataDir/tls/`, creating it on first start (written atomically, key mode 0600).
 */
export async function loadRelayCertificate(options) {
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
    let pair;
    try {
        pair = { cert: await readFile(certPath, 'utf8'), key: await readFile(keyPath, 'utf8') };
    }
    catch {
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
async function writeAtomic(file, data, mode) {
    const tmp = `${file}.${process.pid}.tmp`;
    await writeFile(tmp, data, { mode });
    await rename(tmp, file);
}
//# sourceMappingURL=certificate.js.map