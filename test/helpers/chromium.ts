/**
 * Debian's Chromium for browser tests and the page benchmark (driven by playwright-core,
 * which downloads no browser of its own).
 */

/** Where Debian's `chromium` package puts the browser (.ci/run installs it). */
export const CHROMIUM_PATH = '/usr/bin/chromium';

/** Headless, no network of its own (this machine reaches no other host), a fresh profile. */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/**
 * For a relay with a test certificate: trust any certificate, and resolve every name
 * (the tunnels' *.qt.localhost) to loopback, where the relay or a forwarder listens.
 */
export const CHROMIUM_RELAY_ARGS = [
  ...CHROMIUM_ARGS,
  '--ignore-certificate-errors',
  '--host-resolver-rules=MAP * 127.0.0.1',
];
