import { requireAdmin } from './auth.js';
const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'];
const KINDS = ['ephemeral', 'named'];
export const metricsRoutes = async (app, { deps }) => {
    const { Registry, Counter, Gauge } = await import('prom-client');
    const register = new Registry();
    const { registry, stats, named } = deps;
    const byKind = (count) => {
        const out = { ephemeral: 0, named: 0 };
        for (const t of registry.tunnels())
            out[t.kind] += count(t);
        return out;
    };
    new Gauge({
        name: 'quick_tunnel_relay_info',
        help: 'Always 1; the version label says which quick-tunnel relay this is.',
        labelNames: ['version'],
        registers: [register],
        collect() {
            this.set({ version: deps.relayVersion }, 1);
        },
    });
    new Gauge({
        name: 'quick_tunnel_tunnels_connected',
        help: 'Tunnels with at least one live connection, by kind.',
        labelNames: ['kind'],
        registers: [register],
        collect() {
            const n = byKind((t) => (t.sessions.length > 0 ? 1 : 0));
            for (const kind of KINDS)
                this.set({ kind }, n[kind]);
        },
    });
    new Gauge({
        name: 'quick_tunnel_connections',
        help: 'Live tunnel connections (WebSockets from clients), by tunnel kind.',
        labelNames: ['kind'],
        registers: [register],
        collect() {
            const n = byKind((t) => t.sessions.length);
            for (const kind of KINDS)
                this.set({ kind }, n[kind]);
        },
    });
    new Gauge({
        name: 'quick_tunnel_named_tunnels',
        help: 'Named tunnels reserved in the store, connected or not.',
        registers: [register],
        async collect() {
            this.set((await named.store.list()).length);
        },
    });
    new Gauge({
        name: 'quick_tunnel_streams_open',
        help: 'Mux streams open: visitor requests and WebSockets in flight.',
        registers: [register],
        collect() {
            let n = 0;
            for (const t of registry.tunnels())
                for (const s of t.sessions)
                    n += s.streamCount;
            this.set(n);
        },
    });
    new Counter({
        name: 'quick_tunnel_requests_total',
        help: 'Visitor requests forwarded to tunnels, by response status class.',
        labelNames: ['status_class'],
        registers: [register],
        collect() {
            this.reset();
            for (const cls of STATUS_CLASSES) {
                this.inc({ status_class: cls }, stats.requestsByClass.get(cls) ?? 0);
            }
            const other = stats.requestsByClass.get('other');
            if (other !== undefined)
                this.inc({ status_class: 'other' }, other);
        },
    });
    new Counter({
        name: 'quick_tunnel_bytes_in_total',
        help: 'Body bytes from visitors into tunnels.',
        registers: [register],
        collect() {
            this.reset();
            this.inc(stats.bytesIn);
        },
    });
    new Counter({
        name: 'quick_tunnel_bytes_out_total',
        help: 'Body bytes from tunnels out to visitors.',
        registers: [register],
        collect() {
            this.reset();
            this.inc(stats.bytesOut);
        },
    });
    new Counter({
        name: 'quick_tunnel_connection_events_total',
        help: 'Tunnel connection events: registered, unregistered, rejected (handshake refused).',
        labelNames: ['event'],
        registers: [register],
        collect() {
            this.reset();
            for (const [event, n] of Object.entries(stats.connectionEvents))
                this.inc({ event }, n);
        },
    });
    app.get('/metrics', async (req, reply) => {
        if (!requireAdmin(req, reply, deps.adminTokens))
            return reply;
        const text = await register.metrics();
        return reply.header('cache-control', 'no-store').type(register.contentType).send(text);
    });
};
//# sourceMappingURL=metrics.js.map