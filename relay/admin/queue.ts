/**
 * Control API for store-and-forward (relay/queue/), with the tunnel's credential (or
 * an admin token):
 *
 *     PATCH  /api/tunnels/:name        {queue: boolean}      → status (queue on or off)
 *     GET    /api/tunnels/:name/queue                       → {name, enabled, connected,
 *                                                               waiting, failed, limits, items}
 *     DELETE /api/tunnels/:name/queue[?which=all|failed|waiting] → {purged}
 *
 * Turning the queue off keeps what is already queued (it is still delivered); purge
 * clears it.
 */
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { WebhookQueue } from '../queue/webhook-queue.js';
import { NamedTunnelError } from '../tunnels/named.js';
import type { TunnelRecord } from '../tunnels/store.js';
import type { AdminDeps } from './app.js';
import { isAdmin, presentedToken, sendApiError } from './auth.js';

export const queueRoutes: FastifyPluginAsync<{ deps: AdminDeps }> = async (app, { deps }) => {
  const { named } = deps;

  const fail = (reply: FastifyReply, err: unknown): FastifyReply => {
    if (err instanceof NamedTunnelError)
      return sendApiError(reply, err.status, err.code, err.message);
    throw err;
  };

  const authorized = async (
    req: FastifyRequest<{ Params: { name: string } }>,
    reply: FastifyReply,
  ): Promise<TunnelRecord | undefined> => {
    const record = await named.get(req.params.name);
    if (record !== undefined && isAdmin(req, deps.adminTokens)) return record;
    try {
      return await named.authenticate(req.params.name, presentedToken(req));
    } catch (err) {
      fail(reply, err);
      return undefined;
    }
  };

  const queueOf = (reply: FastifyReply): WebhookQueue | undefined => {
    if (deps.queue !== undefined) return deps.queue;
    sendApiError(
      reply,
      409,
      'QT_ERR_QUEUE_UNAVAILABLE',
      'this relay keeps no data dir, so it cannot keep requests for offline tunnels',
    );
    return undefined;
  };

  app.patch<{ Params: { name: string }; Body: { queue: boolean } }>(
    '/api/tunnels/:name',
    {
      schema: {
        body: {
          type: 'object',
          required: ['queue'],
          properties: { queue: { type: 'boolean' } },
          additionalProperties: false,
        },
      },
    },
    async (req, reply) => {
      const record = await authorized(req, reply);
      if (record === undefined) return reply;
      if (req.body.queue && queueOf(reply) === undefined) return reply;
      try {
        const next = await named.setQueue(record, req.body.queue);
        if (req.body.queue) deps.queue?.enabledNow(next);
        return named.status(next);
      } catch (err) {
        return fail(reply, err);
      }
    },
  );

  app.get<{ Params: { name: string } }>('/api/tunnels/:name/queue', async (req, reply) => {
    const record = await authorized(req, reply);
    if (record === undefined) return reply;
    const queue = queueOf(reply);
    if (queue === undefined) return reply;
    return await queue.view(record);
  });

  app.delete<{ Params: { name: string }; Querystring: { which?: string } }>(
    '/api/tunnels/:name/queue',
    async (req, reply) => {
      const record = await authorized(req, reply);
      if (record === undefined) return reply;
      const queue = queueOf(reply);
      if (queue === undefined) return reply;
      const which = req.query.which ?? 'all';
      if (which !== 'all' && which !== 'failed' && which !== 'waiting') {
        return sendApiError(
          reply,
          400,
          'QT_ERR_BAD_REQUEST',
          `which must be all, failed or waiting, not '${which}'`,
        );
      }
      return { purged: await queue.purge(record, which) };
    },
  );
};
