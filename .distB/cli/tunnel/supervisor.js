/**
 * Keeps a tunnel online: holds `connections` sessions to the relay, replaces any that
 * drops with jittered exponential backoff (forever once the tunnel has been online),
 * resumes the same hostname with the relay's resume token, and drains on stop.
 */
import { randomUUID } from 'node:crypto';
import { QuickTunnelError } from '../../shared/errors.js';
import { ErrorCode } from '../../shared/protocol/frame.js';
export const DEFAULT_BACKOFF = {
    baseMs: 500,
    capMs: 30_000,
    fastAttempts: 10,
    fastCapMs: 2_000,
    stableMs: 60_000,
};
/**
 * Full-jitter delay for `attempt` (0-based): uniform in [0, ceiling], where the
 * ceiling doubles from baseMs, stays ≤ fastCapMs for the first attempts (a relay that
 * restarts in a few seconds is found again within seconds), then grows to capMs.
 */
export function backoffDelay(attempt, policy, random) {
    const exp = policy.baseMs * 2 ** Math.min(attempt, 20);
    const ceiling = Math.min(attempt < policy.fastAttempts ? policy.fastCapMs : policy.capMs, exp);
    return Math.max(100, Math.round(random() * ceiling));
}
function defaultSleep(ms, signal) {
    return new Promise((resolve) => {
        if (signal.aborted)
            return resolve();
        const timer = setTimeout(done, ms);
        function done() {
            clearTimeout(timer);
            signal.removeEventListener('abort', done);
            resolve();
        }
        signal.addEventListener('abort', done, { once: true });
    });
}
export class TunnelSupervisor {
    opts;
    policy;
    stopController = new AbortController();
    sessions = new Set();
    /** When each session's connection is fully closed (see TunnelConnection.closed). */
    transportClosed = new WeakMap();
    assignment;
    resumeToken;
    slots = [];
    stopped = false;
    /** Identifies this process's connections to the relay (see TunnelRequest.clientId). */
    clientId = randomUUID();
    /** Resolves when the supervisor gives up for good (permanent error after online). */
    done;
    resolveDone;
    constructor(opts) {
        this.opts = opts;
        this.policy = opts.backoff ?? DEFAULT_BACKOFF;
        this.done = new Promise((resolve) => (this.resolveDone = resolve));
    }
    get liveConnections() {
        let n = 0;
        for (const s of this.sessions)
            if (!s.closed && !s.receivedGoAway)
                n++;
        return n;
    }
    /** The current assignment (hostname, URLs), once online. */
    get current() {
        return this.assignment;
    }
    /** Latest RTT to the relay over any live session. */
    get rttMs() {
        for (const s of this.sessions)
            if (s.rttMs !== undefined)
                return s.rttMs;
        return undefined;
    }
    /**
     * Connects the first session. Resolves with the assignment once the relay has
     * confirmed the route (so the printed URL works at the first click); rejects when
     * the first connection fails permanently or after `firstConnectAttempts` tries.
     */
    async start() {
        const attempts = this.opts.firstConnectAttempts ?? 3;
        const random = this.opts.random ?? Math.random;
        const sleep = this.opts.sleep ?? defaultSleep;
        let lastErr;
        for (let attempt = 0; attempt < attempts && !this.stopped; attempt++) {
            this.opts.emit({ event: 'connecting', relay: this.opts.relay, attempt: attempt + 1 });
            try {
                const conn = await this.opts.connect({
                    ...this.opts.request,
                    clientId: this.clientId,
                    connection: 0,
                });
                this.adopt(conn);
                this.opts.emit({
                    event: 'ready',
                    url: conn.assignment.urls[0] ?? `https://${conn.assignment.hostname}`,
                    urls: conn.assignment.urls,
                    hostname: conn.assignment.hostname,
                    kind: conn.assignment.kind,
                    relay: this.opts.relay,
                    target: this.opts.target,
                    local: this.opts.local,
                    connections: this.opts.connections ?? 2,
                });
                this.slots.push(this.runSlot(0, conn));
                for (let i = 1; i < (this.opts.connections ?? 2); i++)
                    this.slots.push(this.runSlot(i, undefined));
                return conn.assignment;
            }
            catch (err) {
                lastErr = err;
                if (err instanceof QuickTunnelError && !err.retryable)
                    throw err;
                if (attempt + 1 < attempts) {
                    await sleep(backoffDelay(attempt, this.policy, random), this.stopController.signal);
                }
            }
        }
        if (lastErr instanceof Error) {
            throw new QuickTunnelError('QT_ERR_RELAY_UNREACHABLE', `${lastErr.message} (gave up after ${attempts} attempts)`, { cause: lastErr, retryable: true });
        }
        throw new QuickTunnelError('QT_ERR_STOPPED', 'stopped before the tunnel was online');
    }
    adopt(conn) {
        const session = conn.session;
        this.sessions.add(session);
        session.on('stream', (stream) => this.opts.onStream(stream));
        session.on('rtt', (ms) => this.opts.emit({ event: 'rtt', ms }));
        session.once('close', () => this.sessions.delete(session));
        if (conn.closed !== undefined)
            this.transportClosed.set(session, conn.closed);
        if (conn.assignment.resumeToken !== undefined)
            this.resumeToken = conn.assignment.resumeToken;
        this.assignment = conn.assignment;
    }
    /** One HA slot: hold a session; when it drops, reconnect with backoff. */
    async runSlot(index, initial) {
        const random = this.opts.random ?? Math.random;
        const sleep = this.opts.sleep ?? defaultSleep;
        const now = this.opts.now ?? Date.now;
        let attempt = 0;
        let conn = initial;
        while (!this.stopped) {
            if (conn === undefined) {
                try {
                    const request = {
                        ...this.opts.request,
                        clientId: this.clientId,
                        connection: index,
                    };
                    if (this.resumeToken !== undefined)
                        request.resume = this.resumeToken;
                    const previous = this.assignment?.hostname;
                    conn = await this.opts.connect(request);
                    if (this.stopped) {
                        conn.session.close();
                        return;
                    }
                    this.adopt(conn);
                    if (attempt > 0 || previous !== conn.assignment.hostname) {
                        this.opts.emit({
                            event: 'reconnected',
                            url: conn.assignment.urls[0] ?? conn.assignment.hostname,
                            sameHostname: previous === conn.assignment.hostname,
                        });
                    }
                }
                catch (err) {
                    if (this.stopped)
                        return;
                    if (err instanceof QuickTunnelError && !err.retryable) {
                        // Token revoked, name deleted...: retrying can't help. Stop and report.
                        this.giveUp(err);
                        return;
                    }
                    const delayMs = backoffDelay(attempt, this.policy, random);
                    attempt++;
                    this.opts.emit({
                        event: 'reconnecting',
                        attempt,
                        delayMs,
                        error: err instanceof Error ? err.message : String(err),
                    });
                    await sleep(delayMs, this.stopController.signal);
                    continue;
                }
            }
            const session = conn.session;
            const upAt = now();
            const reason = await new Promise((resolve) => {
                session.once('close', (err) => resolve(err?.message ?? 'connection closed'));
                // A relay going away (redeploy) gets replaced at once, without backoff; the old
                // session finishes its in-flight streams meanwhile.
                session.once('goaway', (_code, message) => resolve(`relay going away${message ? `: ${message}` : ''}`));
            });
            conn = undefined;
            if (this.stopped)
                return;
            if (now() - upAt >= this.policy.stableMs)
                attempt = 0;
            this.opts.emit({
                event: 'connection-lost',
                error: reason,
                connectionsLeft: this.liveConnections,
            });
            if (!session.receivedGoAway) {
                const delayMs = backoffDelay(attempt, this.policy, random);
                attempt++;
                this.opts.emit({ event: 'reconnecting', attempt, delayMs, error: reason });
                await sleep(delayMs, this.stopController.signal);
            }
        }
    }
    giveUp(err) {
        this.resolveDone(err);
    }
    /**
     * Stops: GOAWAY on every session (the relay sends no new streams), waits for
     * in-flight streams up to `graceMs`, then closes.
     */
    async stop(graceMs = 5_000) {
        if (this.stopped)
            return;
        this.stopped = true;
        this.stopController.abort();
        const sessions = [...this.sessions];
        for (const s of sessions)
            s.goAway(ErrorCode.NO_ERROR, 'client stopping');
        let timer;
        // After the GOAWAY, one PING round trip: the PONG comes back after the relay has
        // seen the GOAWAY, so every request it routed here before that has arrived (and
        // was refused, for the relay to retry on another connection or replica). Closing
        // any earlier would lose those requests. Then wait for the in-flight streams.
        await Promise.race([
            Promise.all(sessions.map(goAwaySeen)).then(() => Promise.all(sessions.map((s) => s.whenIdle()))),
            new Promise((r) => (timer = setTimeout(r, graceMs))),
        ]);
        clearTimeout(timer);
        for (const s of sessions)
            s.close();
        // Let each WebSocket finish its close handshake before the process may exit:
        // exiting earlier can reset the TCP connection and lose the last response bytes.
        await Promise.race([
            Promise.all(sessions.map((s) => this.transportClosed.get(s))),
            new Promise((r) => (timer = setTimeout(r, 1_000))),
        ]);
        clearTimeout(timer);
        await Promise.all(this.slots);
        this.opts.emit({ event: 'closed' });
        this.resolveDone(undefined);
    }
}
/** Resolves once the peer answered a PING sent after our GOAWAY (or the session closed). */
function goAwaySeen(session) {
    return new Promise((resolve) => {
        if (session.closed)
            return resolve();
        const done = () => {
            session.off('rtt', done);
            session.off('close', done);
            resolve();
        };
        session.on('rtt', done);
        session.on('close', done);
        session.ping();
    });
}
//# sourceMappingURL=supervisor.js.map