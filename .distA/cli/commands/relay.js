/**
 * `quick-tunnel relay`: runs a relay in the foreground. Structured logs (JSON lines)
 * go to stdout; a human summary of how to connect goes to stderr.
 */
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { ConfigError } from '../../shared/errors.js';
import { startRelay } from '../../relay/index.js';
/** Reads client tokens from a file: one per line, blank lines and # comments ignored. */
export async function readTokensFile(file) {
    let text;
    try {
        text = await readFile(file, 'utf8');
    }
    catch (err) {
        throw new ConfigError(`cannot read --tokens-file ${file}: ${err.message}`);
    }
    const tokens = text
        .split(/\r?\n/)
        .map((l) => l.trim())
        .filter((l) => l !== '' && !l.startsWith('#'));
    if (tokens.length === 0)
        throw new ConfigError(`--tokens-file ${file} holds no token`);
    return tokens;
}
export function defaultRelayDataDir() {
    const base = process.env['XDG_DATA_HOME'] || path.join(os.homedir(), '.local', 'share');
    return path.join(base, 'quick-tunnel', 'relay');
}
function validPort(n, flag) {
    if (!Number.isInteger(n) || n < 0 || n > 65535) {
        throw new ConfigError(`${flag} must be a port number between 0 and 65535, got ${n}`);
    }
    return n;
}
export async function runRelayCommand(opts) {
    if ((opts.cert === undefined) !== (opts.key === undefined)) {
        throw new ConfigError('--cert and --key go together: give both, or neither for a self-signed certificate');
    }
    const domain = opts.domain.toLowerCase().replace(/\.$/, '');
    if (!/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/.test(domain)) {
        throw new ConfigError(`--domain '${opts.domain}' is not a valid domain name`);
    }
    const log = pino({
        level: opts.logLevel,
        base: { service: 'quick-tunnel-relay' },
        redact: ['token', 'credential', 'req.headers.authorization', '*.token', '*.credential'],
    });
    const dataDir = opts.dataDir ?? defaultRelayDataDir();
    const tokens = [...opts.tokens];
    if (opts.tokensFile !== undefined)
        tokens.push(...(await readTokensFile(opts.tokensFile)));
    for (const [flag, n] of [
        ['--rate-limit', opts.rateLimit ?? 0],
        ['--max-connections-per-ip', opts.maxConnectionsPerIp ?? 0],
        ['--max-new-tunnels-per-minute', opts.maxNewTunnelsPerMinute ?? 0],
    ]) {
        if (!Number.isFinite(n) || n < 0)
            throw new ConfigError(`${flag} must be 0 or more, got ${n}`);
    }
    let relay;
    try {
        relay = await startRelay({
            domain,
            host: opts.host,
            httpsPort: validPort(opts.port, '--port'),
            httpPort: validPort(opts.httpPort, '--http-port') === 0 ? null : opts.httpPort,
            certFile: opts.cert,
            keyFile: opts.key,
            dataDir,
            tokens,
            adminTokens: opts.adminTokens ?? [],
            rateLimitPerTunnel: opts.rateLimit ?? 0,
            maxConnectionsPerIp: opts.maxConnectionsPerIp ?? 100,
            creationsPerMinute: opts.maxNewTunnelsPerMinute ?? 30,
            responseTimeoutMs: opts.responseTimeout * 1000,
            publicHttpsPort: opts.publicPort,
            logger: log,
        });
    }
    catch (err) {
        const code = err.code;
        if (code === 'EADDRINUSE') {
            throw new ConfigError(`a port is already in use (${err.message}); pick another with --port / --http-port`);
        }
        if (code === 'EACCES') {
            throw new ConfigError(`not allowed to listen (${err.message}); ports below 1024 need root or CAP_NET_BIND_SERVICE`);
        }
        if (code === 'ENOENT' && (opts.cert !== undefined || opts.key !== undefined)) {
            throw new ConfigError(`cannot read the certificate or key: ${err.message}`);
        }
        throw err;
    }
    const say = (line) => void process.stderr.write(`${line}\n`);
    say(`quick-tunnel relay for *.${domain}`);
    if (relay.httpsPort !== undefined)
        say(`  https://${domain}:${relay.httpsPort}  (tunnels: https://<name>.${domain}:${relay.httpsPort})`);
    if (relay.httpPort !== undefined)
        say(`  http://${domain}:${relay.httpPort}`);
    if (relay.certificate?.selfSigned === true) {
        say(`  self-signed certificate: ${relay.certificate.certPath}`);
        say(`  SHA-256 fingerprint:     ${relay.certificate.fingerprint256}`);
        say(`  clients trust it with:   --ca ${relay.certificate.certPath}`);
    }
    if (tokens.length === 0) {
        say('  WARNING: this relay is OPEN: anyone who can reach it can create tunnels. Use --token to require one.');
    }
    say(`  clients connect with: quick-tunnel 3000 --relay https://${domain}:${relay.httpsPort ?? ''}`);
    say((opts.adminTokens ?? []).length > 0
        ? '  admin endpoints: GET /api/tunnels and /metrics with Authorization: Bearer <admin token>'
        : '  admin endpoints (/metrics, the list of all tunnels) are off: enable them with --admin-token');
    return new Promise((resolve) => {
        let stopping = false;
        const stop = (signal) => {
            if (stopping) {
                say(`${signal} again: exiting now`);
                resolve(130);
                return;
            }
            stopping = true;
            say(`${signal}: draining (up to ${opts.drainTimeout} s; press again to exit at once)…`);
            relay.close(opts.drainTimeout * 1000).then(() => resolve(0), () => resolve(1));
        };
        process.on('SIGINT', () => stop('SIGINT'));
        process.on('SIGTERM', () => stop('SIGTERM'));
    });
}
//# sourceMappingURL=relay.js.map