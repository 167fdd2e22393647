/**
 * Secrets the relay checks: relay access tokens, admin tokens and named-tunnel
 * credentials. Every comparison is constant-time, and credentials are stored only as
 * hashes.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
/** Prefix of a named-tunnel credential, so a leaked one is recognisable (secret scanners). */
export const CREDENTIAL_PREFIX = 'qtc_';
/**
 * A fresh named-tunnel credential: 32 random bytes (256 bits), base64url. It is
 * high-entropy, so a plain SHA-256 is enough to store it (no password stretching).
 */
export function generateCredential(random = randomBytes) {
    return `${CREDENTIAL_PREFIX}${random(32).toString('base64url')}`;
}
/** The stored form of a credential: `sha256:<hex>`. */
export function hashCredential(credential) {
    return `sha256:${createHash('sha256').update(credential).digest('hex')}`;
}
/** Constant-time check of a presented credential against a stored hash. */
export function credentialMatches(presented, storedHash) {
    if (presented === undefined || !storedHash.startsWith('sha256:'))
        return false;
    const expected = Buffer.from(storedHash.slice(7), 'hex');
    const given = createHash('sha256').update(presented).digest();
    return expected.length === given.length && timingSafeEqual(expected, given);
}
/** Constant-time membership test of a presented token; an empty list accepts anything. */
export function tokenAccepted(presented, tokens) {
    if (tokens.length === 0)
        return true;
    return tokenListed(presented, tokens);
}
/** Constant-time membership test; an empty list accepts nothing (admin tokens). */
export function tokenListed(presented, tokens) {
    if (presented === undefined)
        return false;
    const p = createHash('sha256').update(presented).digest();
    let ok = false;
    for (const t of tokens) {
        // Hash both sides so lengths match and timing reveals nothing about the token.
        if (timingSafeEqual(p, createHash('sha256').update(t).digest()))
            ok = true;
    }
    return ok;
}
/** The token of an `Authorization: Bearer <token>` header, if there is one. */
export function bearerToken(header) {
    if (header === undefined)
        return undefined;
    const m = /^Bearer[ ]+(\S+)\s*$/i.exec(header);
    return m?.[1];
}
//# sourceMappingURL=auth.js.map