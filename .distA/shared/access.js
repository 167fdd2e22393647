/**
 * Visitor access rules shared by the CLI (which validates its flags and hashes the
 * password) and the relay (which enforces them).
 */
import { createHash } from 'node:crypto';
import net from 'node:net';
/** Hash the CLI sends for `--basic-auth user:pass`. */
export function basicAuthDigest(userPass) {
    return createHash('sha256').update(userPass, 'utf8').digest('hex');
}
/** Parses `1.2.3.0/24`, `2001:db8::/32` or a bare address. Throws on bad input. */
export function parseCidr(text) {
    const [address = '', prefixText] = text.trim().split('/');
    const version = net.isIP(address);
    if (version === 0)
        throw new Error(`'${text}' is not an IP address or CIDR`);
    const max = version === 4 ? 32 : 128;
    const prefix = prefixText === undefined ? max : Number(prefixText);
    if (!Number.isInteger(prefix) ||
        prefix < 0 ||
        prefix > max ||
        (prefixText ?? '').trim() !== (prefixText ?? '')) {
        throw new Error(`'${text}' has an invalid prefix length (0-${max})`);
    }
    return { address, prefix, family: version === 4 ? 'ipv4' : 'ipv6' };
}
//# sourceMappingURL=access.js.map