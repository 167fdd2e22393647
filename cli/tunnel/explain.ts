/**
 * Relay refusals rewritten to name where the setting came from: a rejected token that
 * was saved by `login` points at the config file, not at `--token`.
 */
import { AuthError, QuickTunnelError } from '../../shared/errors.js';
import type { RelaySettings } from '../config.js';
import { RelayApiError } from './api.js';

type Sources = Pick<RelaySettings, 'relay' | 'token' | 'from' | 'caFile' | 'caFingerprint'>;

/** What to do about a token from `source`. */
function tokenHint(source: string | undefined): string {
  if (source === '--token')
    return 'check the token you passed with --token (ask the relay operator)';
  if (source === 'QUICK_TUNNEL_TOKEN') {
    return 'check QUICK_TUNNEL_TOKEN in your environment (or unset it to use the saved token)';
  }
  return (
    'it was saved by `quick-tunnel login`: save the right one with ' +
    '`quick-tunnel login --relay URL --token TOKEN`, or forget it with `quick-tunnel logout`'
  );
}

/**
 * The relay refused its access token: said by the handshake's wire code (AuthError), or
 * by the control API's QT_ERR_AUTH (the CLI sends no admin token; a named tunnel's
 * credential is QT_ERR_CREDENTIAL there).
 */
function relayTokenRefused(err: QuickTunnelError): boolean {
  if (err instanceof AuthError) return err.relayTokenRefused;
  return err instanceof RelayApiError && err.code === 'QT_ERR_AUTH';
}

/** `err`, or a clearer error naming the setting's source when it is a token or TLS refusal. */
export function explainRelayError(err: unknown, settings: Sources): unknown {
  if (!(err instanceof QuickTunnelError)) return err;
  const where = settings.relay === undefined ? 'the relay' : `the relay ${settings.relay.host}`;
  if (relayTokenRefused(err)) {
    if (settings.token === undefined) {
      return new AuthError(`${where} requires an access token`, {
        cause: err,
        hint: 'pass --token TOKEN, set QUICK_TUNNEL_TOKEN, or save it with `quick-tunnel login --relay URL --token TOKEN`',
      });
    }
    return new AuthError(
      `${where} rejected the access token from ${settings.from.token ?? '--token'}`,
      { cause: err, hint: tokenHint(settings.from.token) },
    );
  }
  if (err.code === 'QT_ERR_TLS' && err.hint === undefined) {
    const trust = [
      settings.caFile !== undefined
        ? `the CA file ${settings.caFile} (from ${settings.from.caFile})`
        : '',
      settings.caFingerprint !== undefined
        ? `the fingerprint from ${settings.from.caFingerprint}`
        : '',
    ].filter((s) => s !== '');
    if (trust.length === 0) return err;
    return new QuickTunnelError(err.code, err.message, {
      cause: err,
      hint: `this run trusted ${trust.join(' and ')}`,
    });
  }
  return err;
}
