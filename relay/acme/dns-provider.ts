/**
 * DNS-01 providers: put a TXT value at `_acme-challenge.DOMAIN` and take exactly that
 * value away again. The apex and the wildcard validations share that one name, so both
 * values must be present at once and cleanup must never remove the other one.
 */
import { spawn } from 'node:child_process';
import { AcmeError } from './errors.js';

export interface DnsProvider {
  /** For logs and error messages: `exec:/path`, `rfc2136 ns1:53`, `acme-dns https://…`. */
  readonly description: string;
  /** `fqdn` is absolute with a trailing dot, as lego passes it: `_acme-challenge.example.com.` */
  present(fqdn: string, value: string): Promise<void>;
  cleanup(fqdn: string, value: string): Promise<void>;
  /**
   * Where the value becomes visible, if not at `fqdn` itself (acme-dns: the account's
   * own name, which `_acme-challenge` is a CNAME to).
   */
  visibleAt?(fqdn: string): string;
}

/** Most of a failing hook's stderr kept for the error message. */
const HOOK_STDERR_MAX_BYTES = 2048;

/**
 * `exec:/path/to/hook`: runs `hook present FQDN VALUE` / `hook cleanup FQDN VALUE`
 * (lego's `exec` provider convention), so whatever lego or a shell script can update works.
 */
export function execProvider(hook: string, options: { timeoutMs?: number } = {}): DnsProvider {
  const timeoutMs = options.timeoutMs ?? 120_000;
  const run = (action: 'present' | 'cleanup', fqdn: string, value: string): Promise<void> =>
    new Promise((resolve, reject) => {
      const child = spawn(hook, [action, fqdn, value], {
        stdio: ['ignore', 'ignore', 'pipe'],
        timeout: timeoutMs,
        killSignal: 'SIGKILL',
      });
      let stderr = '';
      child.stderr.setEncoding('utf8');
      child.stderr.on('data', (chunk: string) => {
        if (stderr.length < HOOK_STDERR_MAX_BYTES) stderr += chunk;
      });
      const fail = (what: string, cause?: unknown): void => {
        const said = stderr.trim().split('\n').slice(-3).join(' | ').slice(0, 500);
        reject(
          new AcmeError(
            'QT_ERR_ACME_DNS',
            `DNS hook '${hook} ${action} ${fqdn} …' ${what}${said === '' ? '' : `: ${said}`}; fix the hook (it must exit 0 once the TXT record is set or removed)`,
            { cause },
          ),
        );
      };
      child.once('error', (err) => fail(`could not run (${err.message})`, err));
      child.once('close', (code, signal) => {
        if (code === 0) resolve();
        else if (signal !== null) fail(`was killed (${signal}) after ${timeoutMs / 1000} s`);
        else fail(`exited with status ${code}`);
      });
    });
  return {
    description: `exec:${hook}`,
    present: (fqdn, value) => run('present', fqdn, value),
    cleanup: (fqdn, value) => run('cleanup', fqdn, value),
  };
}

export interface AcmeDnsAccount {
  /** The acme-dns server, e.g. `https://auth.acme-dns.io`. */
  apiUrl: string;
  username: string;
  password: string;
  subdomain: string;
  /** `<subdomain>.<acme-dns zone>`: `_acme-challenge.DOMAIN` must be a CNAME to it. */
  fulldomain?: string | undefined;
}

/**
 * acme-dns (joohoi/acme-dns): `POST /update` with `X-Api-User` / `X-Api-Key`. It keeps the
 * last two values for a subdomain (made for apex + wildcard), so cleanup has nothing to do.
 */
export function acmeDnsProvider(
  account: AcmeDnsAccount,
  options: { timeoutMs?: number } = {},
): DnsProvider {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const url = new URL(
    'update',
    account.apiUrl.endsWith('/') ? account.apiUrl : `${account.apiUrl}/`,
  );
  return {
    description: `acme-dns ${url.origin}`,
    async present(_fqdn, value) {
      let res: Response;
      try {
        res = await fetch(url, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'x-api-user': account.username,
            'x-api-key': account.password,
          },
          body: JSON.stringify({ subdomain: account.subdomain, txt: value }),
          signal: AbortSignal.timeout(timeoutMs),
        });
      } catch (err) {
        throw new AcmeError(
          'QT_ERR_ACME_DNS',
          `cannot reach acme-dns at ${url.origin}: ${(err as Error).message}; check --acme-dns-api`,
          { cause: err },
        );
      }
      const text = (await res.text()).slice(0, 300);
      if (res.status !== 200) {
        throw new AcmeError(
          'QT_ERR_ACME_DNS',
          `acme-dns at ${url.origin} refused the update (HTTP ${res.status}${text === '' ? '' : `: ${text}`})${res.status === 401 ? '; check the username/password in --acme-dns-account' : ''}`,
        );
      }
    },
    async cleanup() {
      // acme-dns rolls its two values over by itself.
    },
    visibleAt: (fqdn) =>
      account.fulldomain === undefined ? fqdn : `${account.fulldomain.replace(/\.$/, '')}.`,
  };
}
