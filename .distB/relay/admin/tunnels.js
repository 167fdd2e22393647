import { NamedTunnelError } from '../tunnels/named.js';
import { isAdmin, presentedToken, requireAdmin, requireRelayToken, sendApiError } from './auth.js';
export const tunnelRoutes = async (app, { deps }) => {
    const { named } = deps;
    // Answers carry credentials or owner-only data: never cache them anywhere.
    app.addHook('onSend', async (req, reply, payload) => {
        if (req.url.startsWith('/api/'))
            reply.header('cache-control', 'no-store');
        return payload;
    });
    const fail = (reply, err) => {
        if (err instanceof NamedTunnelError)
            return sendApiError(reply, err.status, err.code, err.message);
        throw err;
    };
    /**
     * The record for `:name` when the caller holds its credential (or the admin token);
     * otherwise sends 404/401 and returns undefined.
     */
    const authorizedRecord = async (req, reply) => {
        const record = await named.get(req.params.name);
        if (record !== undefined && isAdmin(req, deps.adminTokens))
            return record;
        try {
            // Same checks and messages as the tunnel endpoint's HELLO.
            return await named.authenticate(req.params.name, presentedToken(req));
        }
        catch (err) {
            fail(reply, err);
            return undefined;
        }
    };
    app.post('/api/tunnels', {
        schema: {
            body: {
                type: 'object',
                required: ['name'],
                properties: { name: { type: 'string', minLength: 1, maxLength: 253 } },
                additionalProperties: false,
            },
        },
    }, async (req, reply) => {
        if (!requireRelayToken(req, reply, deps.tokens, deps.adminTokens))
            return reply;
        try {
            const { record, credential } = await named.create(req.body.name);
            const status = named.status(record);
            return reply.code(201).send({
                id: record.id,
                name: record.name,
                hostname: status.hostname,
                urls: status.urls,
                createdAt: record.createdAt,
                credential,
            });
        }
        catch (err) {
            return fail(reply, err);
        }
    });
    app.get('/api/tunnels', async (req, reply) => {
        if (!requireAdmin(req, reply, deps.adminTokens))
            return reply;
        return { tunnels: await named.list() };
    });
    app.get('/api/tunnels/:name', async (req, reply) => {
        const record = await authorizedRecord(req, reply);
        if (record === undefined)
            return reply;
        return named.status(record);
    });
    app.delete('/api/tunnels/:name', async (req, reply) => {
        const record = await authorizedRecord(req, reply);
        if (record === undefined)
            return reply;
        const force = req.query.force === 'true' || req.query.force === '1';
        try {
            const { connectionsClosed } = await named.delete(record, force);
            return {
                deleted: true,
                id: record.id,
                name: record.name,
                connectionsClosed,
            };
        }
        catch (err) {
            return fail(reply, err);
        }
    });
};
//# sourceMappingURL=tunnels.js.map