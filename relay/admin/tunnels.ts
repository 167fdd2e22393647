/**
 * Control API for named tunnels:
 *
 *     POST   /api/tunnels   {name, queue?} relay token   → 201 {id, name, hostname, urls, credential, createdAt}
 *     GET    /api/tunnels                 admin token   → {tunnels: [status…]}
 *     GET    /api/tunnels/:name           credential    → status
 *     DELETE /api/tunnels/:name[?force=true] credential → {deleted, id, name, connectionsClosed}
 *
 * The credential is in the create answer only; the relay keeps its hash. A status is
 * {id, name, hostname, urls, createdAt, lastSeenAt, connected, connections, replicas}.
 */
import { createHash } from 'node:crypto';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { NamedTunnelError, normalizeName } from '../tunnels/named.js';
import type { TunnelRecord } from '../tunnels/store.js';
import type { AdminDeps } from './app.js';
import { isAdmin, presentedToken, requireAdmin, requireRelayToken, sendApiError } from './auth.js';

export const tunnelRoutes: FastifyPluginAsync<{ deps: AdminDeps }> = async (app, { deps }) => {
  const { named } = deps;

  // Answers carry credentials or owner-only data: never cache them anywhere.
  app.addHook('onSend', async (req, reply, payload) => {
    if (req.url.startsWith('/api/')) reply.header('cache-control', 'no-store');
    return payload;
  });

  const fail = (reply: FastifyReply, err: unknown): FastifyReply => {
    if (err instanceof NamedTunnelError) {
      if (err.retryAfterS !== undefined) reply.header('retry-after', String(err.retryAfterS));
      return sendApiError(reply, err.status, err.code, err.message);
    }
    throw err;
  };

  /**
   * Whom a creation is charged to (quota and rate): the relay token when the relay has
   * tokens, else the client's IP; nobody for an admin.
   */
  const ownerOf = (req: FastifyRequest): string | undefined => {
    if (isAdmin(req, deps.adminTokens)) return undefined;
    const token = presentedToken(req);
    if (token !== undefined && deps.tokens.length > 0) {
      return `token:${createHash('sha256').update(token).digest('hex').slice(0, 16)}`;
    }
    return `ip:${req.socket.remoteAddress ?? ''}`;
  };

  /**
   * The record for `:name` when the caller holds its credential (or the admin token);
   * otherwise sends 404/401 and returns undefined.
   */
  const authorizedRecord = async (
    req: FastifyRequest<{ Params: { name: string } }>,
    reply: FastifyReply,
  ): Promise<TunnelRecord | undefined> => {
    const record = await named.get(req.params.name);
    if (record !== undefined && isAdmin(req, deps.adminTokens)) return record;
    try {
      return await named.authenticate(req.params.name, presentedToken(req));
    } catch (err) {
      if (err instanceof NamedTunnelError && (err.status === 404 || err.status === 401)) {
        // One answer whether or not the name exists: without its credential nobody
        // learns which names are taken.
        if (presentedToken(req) !== undefined) {
          deps.authThrottle?.fail(req.socket.remoteAddress ?? '', 'tunnel credential');
        }
        sendApiError(
          reply,
          404,
          'QT_ERR_NO_SUCH_TUNNEL',
          `there is no tunnel named '${normalizeName(req.params.name)}' that this credential opens (it was deleted, never created here, or the credential is not the one issued for it)`,
        );
        return undefined;
      }
      fail(reply, err);
      return undefined;
    }
  };

  app.post<{ Body: { name: string; queue?: boolean } }>(
    '/api/tunnels',
    {
      schema: {
        body: {
          type: 'object',
          required: ['name'],
          properties: {
            name: { type: 'string', minLength: 1, maxLength: 253 },
            // Store-and-forward while offline (relay/queue/); see admin/queue.ts.
            queue: { type: 'boolean' },
          },
          additionalProperties: false,
        },
      },
    },
    async (req, reply) => {
      if (!requireRelayToken(req, reply, deps.tokens, deps.adminTokens)) return reply;
      try {
        const owner = ownerOf(req);
        if (req.body.queue === true && deps.queue === undefined) {
          return sendApiError(
            reply,
            409,
            'QT_ERR_QUEUE_UNAVAILABLE',
            'this relay keeps no data dir, so it cannot keep requests for offline tunnels',
          );
        }
        const { record, credential } = await named.create(req.body.name, {
          queue: req.body.queue === true,
          ...(owner !== undefined ? { owner } : {}),
        });
        const status = named.status(record);
        return reply.code(201).send({
          id: record.id,
          name: record.name,
          hostname: status.hostname,
          urls: status.urls,
          createdAt: record.createdAt,
          queue: status.queue,
          credential,
        });
      } catch (err) {
        return fail(reply, err);
      }
    },
  );

  app.get('/api/tunnels', async (req, reply) => {
    if (!requireAdmin(req, reply, deps.adminTokens)) return reply;
    return { tunnels: await named.list() };
  });

  app.get<{ Params: { name: string } }>('/api/tunnels/:name', async (req, reply) => {
    const record = await authorizedRecord(req, reply);
    if (record === undefined) return reply;
    return named.status(record);
  });

  app.delete<{ Params: { name: string }; Querystring: { force?: string } }>(
    '/api/tunnels/:name',
    async (req, reply) => {
      const record = await authorizedRecord(req, reply);
      if (record === undefined) return reply;
      const force = req.query.force === 'true' || req.query.force === '1';
      try {
        const { connectionsClosed } = await named.delete(record, force);
        await deps.queue?.drop(record);
        return {
          deleted: true,
          id: record.id,
          name: record.name,
          connectionsClosed,
        };
      } catch (err) {
        return fail(reply, err);
      }
    },
  );
};
