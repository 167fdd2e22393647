/**
 * Visitor answers of store-and-forward: the webhook was kept (202), or why it was not
 * (503 with a page that names the reason: too large, queue full, storage full).
 */
import type { ErrorPage } from '../edge/pages.js';

function mib(bytes: number): string {
  return bytes >= 1024 * 1024
    ? `${+(bytes / 1024 / 1024).toFixed(2)} MiB`
    : bytes >= 1024
      ? `${+(bytes / 1024).toFixed(1)} KiB`
      : `${bytes} bytes`;
}

export const queuePages = {
  tooLarge(hostname: string, maxBodyBytes: number): ErrorPage {
    return {
      status: 503,
      title: 'Tunnel offline: request too large to keep',
      detail: `The tunnel ${hostname} is offline. Its relay keeps requests until it is back, but only bodies up to ${mib(maxBodyBytes)}, and this one is larger.`,
      hint: 'Retry when the tunnel is online (requests of any size pass through then).',
      headers: { 'retry-after': '60', 'x-quick-tunnel-queue': 'too-large' },
    };
  },
  queueFull(hostname: string, kept: number, failed: number): ErrorPage {
    return {
      status: 503,
      title: 'Tunnel offline: queue full',
      detail: `The tunnel ${hostname} is offline and its queue already holds the most requests it may keep (${kept}${failed > 0 ? `, ${failed} of them failed` : ''}).`,
      hint: `Retry later. If this is your tunnel: start it to deliver the queue, or clear failed requests with \`quick-tunnel tunnel queue ${hostname.split('.')[0] ?? ''} --purge\`.`,
      headers: { 'retry-after': '60', 'x-quick-tunnel-queue': 'full' },
    };
  },
  storageFull(hostname: string): ErrorPage {
    return {
      status: 503,
      title: 'Tunnel offline: relay storage full',
      detail: `The tunnel ${hostname} is offline, and the relay has no room left to keep this request.`,
      hint: 'Retry later. If you run this relay: raise --queue-disk-cap or free disk space.',
      headers: { 'retry-after': '60', 'x-quick-tunnel-queue': 'storage-full' },
    };
  },
  busy(hostname: string): ErrorPage {
    return {
      status: 503,
      title: 'Tunnel offline: relay busy',
      detail: `The tunnel ${hostname} is offline, and the relay is receiving too many requests to keep right now.`,
      hint: 'Retry in a moment.',
      headers: { 'retry-after': '5', 'x-quick-tunnel-queue': 'busy' },
    };
  },
};
