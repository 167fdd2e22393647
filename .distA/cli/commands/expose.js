/**
 * `quick-tunnel <target>`: exposes a local port through a relay (or, with no relay
 * configured, through a relay embedded in this process on 127.0.0.1).
 */
import { readFile } from 'node:fs/promises';
import net from 'node:net';
import { ConfigError } from '../../shared/errors.js';
import { memoryTransportPair } from '../../shared/mux/transport.js';
import { basicAuthDigest, parseCidr } from '../../shared/access.js';
import { VERSION } from '../../shared/version.js';
import { parseRelayUrl, preferProductionReact, readConfigFile, readEnvironment, } from '../config.js';
import { OriginProxy } from '../origin/proxy.js';
import { LOCALHOST_ADDRESSES, parseTarget } from '../origin/target.js';
import { dialRelay, handshake } from '../tunnel/client.js';
import { namedTunnelCredential } from '../tunnel/credentials.js';
import { proxyAgent, proxyFor } from '../tunnel/proxy-agent.js';
import { TunnelSupervisor } from '../tunnel/supervisor.js';
import { lineView } from '../ui/lines.js';
/** Validates --basic-auth / --allow-ip locally and builds what the relay enforces. */
export function accessPolicy(opts) {
    const policy = {};
    if (opts.basicAuth !== undefined) {
        const colon = opts.basicAuth.indexOf(':');
        if (colon <= 0 || colon === opts.basicAuth.length - 1) {
            throw new ConfigError("--basic-auth takes USER:PASS, e.g. --basic-auth 'demo:s3cret'");
        }
        policy.basicAuthSha256 = basicAuthDigest(opts.basicAuth);
    }
    if (opts.allowIp !== undefined && opts.allowIp.length > 0) {
        for (const cidr of opts.allowIp) {
            try {
                parseCidr(cidr);
            }
            catch (err) {
                throw new ConfigError(`--allow-ip: ${err.message} (use e.g. 203.0.113.7, 10.0.0.0/8 or 2001:db8::/32)`);
            }
        }
        policy.allowIps = [...opts.allowIp];
    }
    return Object.keys(policy).length === 0 ? undefined : policy;
}
/** Maps the origin proxy's events onto the CLI's event stream. */
function originEventToTunnelEvent(e) {
    switch (e.type) {
        case 'request': {
            const out = {
                event: 'request',
                id: e.id,
                method: e.method,
                path: e.path,
                status: e.status,
                durationMs: e.durationMs,
                bytesIn: e.bytesIn,
                bytesOut: e.bytesOut,
                upgrade: e.upgrade,
            };
            if (e.error !== undefined)
                out.error = e.error;
            return out;
        }
        case 'request-start':
            return { event: 'request-start', id: e.id, method: e.method, path: e.path };
        case 'hint':
            return { event: 'hint', code: e.code, message: e.message };
        case 'warning':
            return { event: 'warning', message: e.message };
        default:
            return undefined;
    }
}
/** True if something accepts TCP connections at the target (any of its addresses). */
async function originListening(target) {
    for (const host of target.localhost ? LOCALHOST_ADDRESSES : [target.hostname]) {
        const ok = await new Promise((resolve) => {
            const socket = net.connect({ host, port: target.port });
            socket.setTimeout(1000);
            const done = (result) => {
                socket.destroy();
                resolve(result);
            };
            socket.once('connect', () => done(true));
            socket.once('error', () => done(false));
            socket.once('timeout', () => done(false));
        });
        if (ok)
            return true;
    }
    return false;
}
export async function runExpose(opts) {
    const env = readEnvironment();
    const file = readConfigFile(env.configDir);
    const target = parseTarget(opts.target);
    const relayInput = opts.relay ?? env.relay ?? file.relay;
    const token = opts.token ?? env.token ?? file.token;
    const caFile = opts.ca ?? file.ca;
    let ca;
    if (caFile !== undefined) {
        try {
            ca = await readFile(caFile, 'utf8');
        }
        catch (err) {
            throw new ConfigError(`cannot read the --ca file ${caFile}: ${err.message}`, {
                cause: err,
            });
        }
    }
    if (!Number.isInteger(opts.connections) || opts.connections < 1 || opts.connections > 16) {
        throw new ConfigError('--connections must be between 1 and 16');
    }
    // A named tunnel connects with the credential `tunnel create` stored (on a real relay).
    const named = opts.name === undefined
        ? undefined
        : await namedTunnelCredential(env.configDir, relayInput, opts.name);
    const hostHeader = opts.hostHeader === undefined || opts.hostHeader === 'preserve'
        ? 'preserve'
        : opts.hostHeader === 'rewrite'
            ? 'rewrite'
            : { value: opts.hostHeader };
    // Views: the Ink TUI on an interactive terminal, lines with --log or otherwise.
    const useTui = opts.log === undefined &&
        process.stdout.isTTY === true &&
        process.stdin.isTTY === true &&
        !env.ci;
    const lines = useTui ? undefined : lineView(opts.log ?? 'text');
    let tui;
    const emit = (e) => (tui !== undefined ? tui.tunnelEvent(e) : lines?.(e));
    const origin = new OriginProxy({
        target,
        hostHeader,
        insecure: opts.originInsecure,
        // The TUI inspects and replays requests: it needs their heads and body previews.
        capture: useTui,
        onEvent: (e) => {
            if (tui !== undefined) {
                tui.originEvent(e);
                return;
            }
            const mapped = originEventToTunnelEvent(e);
            if (mapped !== undefined)
                emit(mapped);
        },
    });
    const request = { clientVersion: VERSION };
    if (token !== undefined)
        request.token = token;
    const access = accessPolicy(opts);
    if (access !== undefined)
        request.access = access;
    if (named !== undefined) {
        request.name = named.name;
        request.credential = named.credential;
    }
    let connect;
    let relayLabel;
    let stopEmbedded;
    let connections = opts.connections;
    if (relayInput === undefined) {
        // Embedded default: a relay in this process, plain HTTP on 127.0.0.1, domain
        // `localhost` (browsers and curl resolve *.localhost to loopback). The client
        // talks to it in memory: no socket, no TLS needed between the two.
        const { startRelay } = await import('../../relay/index.js');
        const relay = await startRelay({
            domain: 'localhost',
            host: '127.0.0.1',
            httpsPort: null,
            httpPort: 0,
            dataDir: null,
            tokens: [],
        });
        stopEmbedded = () => relay.close(2_000);
        relayLabel = `local relay on 127.0.0.1:${relay.httpPort}`;
        connections = 1;
        connect = (req) => {
            const [clientSide, relaySide] = memoryTransportPair();
            relay.attach(relaySide);
            return handshake(clientSide, req);
        };
    }
    else {
        const relayUrl = parseRelayUrl(relayInput);
        relayLabel = relayUrl.host;
        const proxy = proxyFor(relayUrl, env);
        const agent = proxy === undefined ? undefined : proxyAgent(proxy, relayUrl.protocol === 'https:');
        if (proxy !== undefined)
            process.stderr.write(`using the proxy ${proxy.host} to reach the relay\n`);
        connect = (req) => dialRelay({ relay: relayUrl, request: req, ca, insecure: opts.relayInsecure, agent });
        if (opts.relayInsecure) {
            process.stderr.write("warning: --relay-insecure: the relay's certificate is NOT verified; anyone on the network path can read and change this tunnel's traffic.\n");
        }
    }
    const supervisor = new TunnelSupervisor({
        connect,
        request,
        connections,
        onStream: (stream) => origin.handle(stream),
        emit,
        relay: relayLabel,
        target: target.label,
        local: relayInput === undefined,
    });
    const cleanup = async () => {
        await supervisor.stop(5_000);
        origin.close();
        await stopEmbedded?.();
        await tui?.close();
    };
    // q / Ctrl-C in the TUI: before the tunnel is online, stop connecting; after, the
    // same path as SIGINT (set below).
    let quitEarly = false;
    let quit = () => {
        quitEarly = true;
        supervisor.stop(0).catch(() => { });
    };
    if (useTui) {
        // Loaded only here: Ink takes ~400 ms to import.
        preferProductionReact();
        const { startTui } = await import('../ui/tui/index.js');
        tui = startTui({
            color: opts.color && !env.noColor,
            relay: relayLabel,
            target: target.label,
            source: { liveConnections: () => supervisor.liveConnections, rttMs: () => supervisor.rttMs },
            origin,
            caFile,
            onQuit: () => quit(),
        });
    }
    try {
        await supervisor.start();
    }
    catch (err) {
        await cleanup();
        if (quitEarly)
            return 0;
        throw err;
    }
    if (quitEarly) {
        await cleanup();
        return 0;
    }
    if (!(await originListening(target))) {
        emit({
            event: 'warning',
            message: `nothing is listening on ${target.label} yet: start your app there; visitors get a 502 page until then`,
        });
    }
    return new Promise((resolve) => {
        let stopping = false;
        const stop = (code) => {
            if (stopping) {
                resolve(130);
                return;
            }
            stopping = true;
            cleanup().then(() => resolve(code), () => resolve(1));
        };
        process.on('SIGINT', () => stop(0));
        process.on('SIGTERM', () => stop(0));
        quit = () => stop(0);
        supervisor.done.then((err) => {
            if (err !== undefined && !stopping) {
                // With the TUI, after it gave the terminal back (so the message stays visible).
                const report = () => void process.stderr.write(`error: ${err.message}\n`);
                if (tui === undefined)
                    report();
                else
                    void tui.close().then(report);
                stop(1);
            }
        }, () => stop(1));
    });
}
//# sourceMappingURL=expose.js.map