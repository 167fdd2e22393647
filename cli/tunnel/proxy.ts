/**
 * The agent that reaches a relay through a proxy (cli/tunnel/proxy-agent.ts), loaded on
 * first use: https-proxy-agent brings debug and its proxy-auth helpers, ~20 ms of
 * startup that a CLI without a proxy (most of them) would pay for nothing.
 * test/e2e/startup-imports.test.ts keeps it out of the startup graph.
 */
import type { Agent } from 'node:http';
import type net from 'node:net';

/** The agent for `relay` through `proxy` (cli/config.ts's relayProxy); none without one. */
export async function proxyAgentFor(
  proxy: URL | undefined,
  relay: URL,
): Promise<Agent | undefined> {
  if (proxy === undefined) return undefined;
  const { proxyAgent } = await import('./proxy-agent.js');
  return proxyAgent(proxy, relay.protocol === 'https:');
}

/** A raw CONNECT tunnel to host:port through `proxy` (see proxy-agent.ts). */
export async function connectThroughProxy(
  proxy: URL,
  host: string,
  port: number,
): Promise<net.Socket> {
  const loaded = await import('./proxy-agent.js');
  return loaded.connectThroughProxy(proxy, host, port);
}
