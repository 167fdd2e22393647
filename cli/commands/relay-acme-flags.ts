/**
 * The `--acme*` flags of `quick-tunnel relay` (yargs definitions and their mapping to
 * AcmeFlags). Kept apart from relay-acme.ts so the CLI's startup loads nothing more.
 */
import type { Argv } from 'yargs';
import type { AcmeFlags } from './relay-acme.js';

export function acmeOptions<T>(y: Argv<T>) {
  return y
    .option('acme', {
      type: 'boolean',
      default: false,
      describe: 'get and renew a wildcard certificate for DOMAIN and *.DOMAIN by ACME DNS-01',
    })
    .option('acme-email', { type: 'string', describe: 'ACME account contact address' })
    .option('acme-dns', {
      type: 'string',
      describe: 'how to set the TXT record: exec:/path/to/hook | rfc2136 | acme-dns',
    })
    .option('acme-directory', {
      type: 'string',
      describe: "ACME directory URL (default: Let's Encrypt)",
    })
    .option('acme-staging', { type: 'boolean', describe: "Let's Encrypt's staging directory" })
    .option('acme-directory-ca', {
      type: 'string',
      describe: "CA certificate to trust for a private ACME server's TLS",
    })
    .option('acme-dns-resolver', {
      type: 'string',
      describe: "HOST:PORT to check the TXT record at (default: the zone's NS servers)",
    })
    .option('acme-dns-timeout', {
      type: 'number',
      describe: 'seconds the TXT record may take to appear (default 120)',
    })
    .option('acme-eab-kid', { type: 'string', describe: 'external account binding key id' })
    .option('acme-eab-hmac-key', {
      type: 'string',
      describe: 'external account binding HMAC key',
    })
    .option('acme-dns-server', {
      type: 'string',
      describe: 'rfc2136: primary DNS server HOST:PORT',
    })
    .option('acme-dns-tsig-key', {
      type: 'string',
      describe: 'rfc2136: TSIG key name (hmac-sha256)',
    })
    .option('acme-dns-tsig-secret-file', {
      type: 'string',
      describe: 'rfc2136: file with the TSIG secret (or QUICK_TUNNEL_ACME_TSIG_SECRET)',
    })
    .option('acme-dns-zone', {
      type: 'string',
      describe: 'rfc2136: zone to update (default: found by SOA)',
    })
    .option('acme-dns-api', { type: 'string', describe: 'acme-dns: server URL' })
    .option('acme-dns-account', {
      type: 'string',
      describe: 'acme-dns: JSON file from its /register (username, password, subdomain)',
    });
}

type AcmeArgs = Awaited<ReturnType<typeof acmeOptions<object>>['argv']>;

export function acmeFlags(args: AcmeArgs): AcmeFlags {
  return {
    acme: args.acme,
    email: args['acme-email'],
    dns: args['acme-dns'],
    directory: args['acme-directory'],
    staging: args['acme-staging'],
    directoryCa: args['acme-directory-ca'],
    resolver: args['acme-dns-resolver'],
    dnsTimeout: args['acme-dns-timeout'],
    eabKid: args['acme-eab-kid'],
    eabHmacKey: args['acme-eab-hmac-key'],
    dnsServer: args['acme-dns-server'],
    tsigKey: args['acme-dns-tsig-key'],
    tsigSecretFile: args['acme-dns-tsig-secret-file'],
    dnsZone: args['acme-dns-zone'],
    dnsApi: args['acme-dns-api'],
    dnsAccount: args['acme-dns-account'],
  };
}
