/**
 * The relay's own HTTP app on the apex host: landing page and health check. Loaded
 * lazily on the first apex request so a tunnel's time-to-URL does not pay for it.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import type { TunnelRegistry } from '../tunnels/registry.js';

export interface AdminDeps {
  domain: string;
  registry: TunnelRegistry;
  relayVersion: string;
  open: boolean;
  startedAt: number;
}

export async function buildAdminApp(deps: AdminDeps): Promise<FastifyInstance> {
  const app = Fastify({ logger: false, trustProxy: false });

  app.get('/healthz', async () => ({
    ok: true,
    version: deps.relayVersion,
    tunnels: deps.registry.size,
    uptimeSeconds: Math.round((Date.now() - deps.startedAt) / 1000),
  }));

  app.get('/', async (_req, reply) => {
    reply.type('text/html; charset=utf-8');
    return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>quick-tunnel relay</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem}
code{background:#f4f4f4;padding:.1rem .3rem;border-radius:4px}</style></head><body>
<h1>quick-tunnel relay · ${escape(deps.domain)}</h1>
<p>This relay exposes local ports as <code>https://&lt;name&gt;.${escape(deps.domain)}</code>.</p>
<p>Connect with <code>npx quick-tunnel 3000 --relay https://${escape(deps.domain)}${deps.open ? '' : ' --token TOKEN'}</code></p>
<p>${deps.registry.size} tunnel(s) online.</p></body></html>`;
  });

  await app.ready();
  return app;
}

function escape(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
