/**
 * One ACME order for DOMAIN and *.DOMAIN by DNS-01 (RFC 8555): the account (with
 * external account binding when the CA wants it), the order and its authorizations, the
 * TXT records presented, seen at the servers and validated (then removed), a new P-256
 * key and its CSR, finalize, download. relay/acme/manager.ts decides when to run it and
 * keeps what it returns.
 */
import type acmeClient from 'acme-client';
import type { Logger } from 'pino';
import { ACME_PROBLEM, AcmeError } from './errors.js';
import type { AcmeSettings, CertificatePem } from './manager.js';
import { waitForTxt } from './propagation.js';

export interface OrderOptions {
  acme: typeof acmeClient;
  directoryUrl: string;
  accountKey: Buffer;
  domain: string;
  settings: Pick<
    AcmeSettings,
    | 'email'
    | 'eab'
    | 'dns'
    | 'resolver'
    | 'propagationTimeoutMs'
    | 'propagationIntervalMs'
    | 'pollMinMs'
  >;
  log: Logger;
  /** Aborts the propagation wait when the relay stops. */
  signal: AbortSignal;
  /** Throws once the relay is shutting down (checked between steps). */
  checkOpen: () => void;
}

/** Gets a certificate (chain and key, PEM) from the CA; any failure is an AcmeError. */
export async function orderCertificate(opts: OrderOptions): Promise<CertificatePem> {
  const { acme, directoryUrl, accountKey, domain, settings, log, signal, checkOpen } = opts;
  const pollMinMs = settings.pollMinMs ?? 1_000;
  const client = new acme.Client({
    directoryUrl,
    accountKey,
    ...(settings.eab === undefined ? {} : { externalAccountBinding: settings.eab }),
    backoffAttempts: 10,
    backoffMin: pollMinMs,
    backoffMax: Math.max(pollMinMs, 10_000),
  });
  await step('creating the ACME account', () =>
    client.createAccount({
      termsOfServiceAgreed: true,
      contact: [`mailto:${settings.email}`],
    }),
  ).catch((err: AcmeError) => {
    // The CA's problem type (relay/acme/ca-http.ts), not its wording, says it wants EAB.
    if (err.problemType === ACME_PROBLEM.externalAccountRequired) {
      const hint =
        settings.eab === undefined
          ? '; this CA needs external account binding: pass --acme-eab-kid and --acme-eab-hmac-key from its dashboard'
          : '';
      throw new AcmeError(
        'QT_ERR_ACME_ORDER',
        `creating the ACME account failed: ${err.message}${hint}`,
        { cause: err },
      );
    }
    throw err;
  });
  checkOpen();
  const order = await step('placing the certificate order', () =>
    client.createOrder({
      identifiers: [
        { type: 'dns', value: domain },
        { type: 'dns', value: `*.${domain}` },
      ],
    }),
  );
  const authorizations = await step('reading the authorizations', () =>
    client.getAuthorizations(order),
  );
  const todo: { fqdn: string; value: string; challenge: { url: string; type: string } }[] = [];
  for (const authz of authorizations) {
    if (authz.status === 'valid') continue; // the CA remembers an earlier validation
    const challenge = authz.challenges.find((c) => c.type === 'dns-01');
    if (challenge === undefined) {
      throw new AcmeError(
        'QT_ERR_ACME_ORDER',
        `the CA offers no dns-01 challenge for ${authz.identifier.value}; a wildcard certificate needs a CA that supports DNS-01`,
        { retryable: false },
      );
    }
    const value = await client.getChallengeKeyAuthorization(challenge);
    todo.push({ fqdn: `_acme-challenge.${authz.identifier.value}.`, value, challenge });
  }
  const dns = settings.dns;
  const presented: { fqdn: string; value: string }[] = [];
  try {
    for (const t of todo) {
      checkOpen();
      await dns.present(t.fqdn, t.value);
      presented.push(t);
    }
    // Apex and wildcard share one name: wait until both values are visible at once.
    const byName = new Map<string, string[]>();
    for (const t of todo) {
      const name = (dns.visibleAt?.(t.fqdn) ?? t.fqdn).replace(/\.$/, '');
      byName.set(name, [...(byName.get(name) ?? []), t.value]);
    }
    for (const [name, values] of byName) {
      await waitForTxt(name, values, {
        resolver: settings.resolver,
        timeoutMs: settings.propagationTimeoutMs ?? 120_000,
        intervalMs: settings.propagationIntervalMs ?? 2_000,
        signal: signal,
      });
      checkOpen();
    }
    for (const t of todo) {
      await step(`asking the CA to validate ${t.fqdn}`, () =>
        client.completeChallenge(t.challenge as Parameters<typeof client.completeChallenge>[0]),
      );
    }
    for (const t of todo) {
      await step(`validating ${t.fqdn} (the CA looked up the TXT record)`, () =>
        client.waitForValidStatus(t.challenge),
      );
    }
  } finally {
    for (const p of presented) {
      try {
        await dns.cleanup(p.fqdn, p.value);
      } catch (err) {
        log.warn(
          { event: 'acme_cleanup_failed', err: (err as Error).message },
          `could not remove the TXT record ${p.fqdn}: ${(err as Error).message}`,
        );
      }
    }
  }
  checkOpen();
  const certKey = await acme.crypto.createPrivateEcdsaKey('P-256');
  const [, csr] = await acme.crypto.createCsr(
    { commonName: domain, altNames: [domain, `*.${domain}`] },
    certKey,
  );
  const finalized = await step('finalizing the order', () => client.finalizeOrder(order, csr));
  const chain = await step('downloading the certificate', () => client.getCertificate(finalized));
  return { cert: chain, key: certKey.toString() };
}

async function step<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof AcmeError) throw err;
    const msg = (err as Error).message ?? String(err);
    throw new AcmeError('QT_ERR_ACME_ORDER', `${what} failed: ${msg}`, { cause: err });
  }
}
