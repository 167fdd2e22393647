/**
 * Host routing: one parsed value decides where a request goes, and every later check
 * (access control, logs) reads the same value.
 */
/**
 * Normalises a Host header: strips the port, lowercases, drops one trailing dot.
 * Returns undefined for a missing or malformed value.
 */
export function normalizeHost(raw) {
    if (raw === undefined)
        return undefined;
    let host = raw.trim().toLowerCase();
    if (host === '')
        return undefined;
    if (host.startsWith('[')) {
        const end = host.indexOf(']');
        if (end === -1)
            return undefined;
        const rest = host.slice(end + 1);
        if (rest !== '' && !/^:\d{1,5}$/.test(rest))
            return undefined;
        return host.slice(0, end + 1);
    }
    const colon = host.indexOf(':');
    if (colon !== -1) {
        if (!/^\d{1,5}$/.test(host.slice(colon + 1)))
            return undefined;
        host = host.slice(0, colon);
    }
    if (host.endsWith('.'))
        host = host.slice(0, -1);
    if (!/^[a-z0-9.-]+$/.test(host))
        return undefined;
    return host;
}
/** Routes a normalised host against the relay's domain. */
export function routeHost(host, domain) {
    if (host === undefined)
        return { kind: 'unknown', host: '' };
    if (host === domain)
        return { kind: 'apex' };
    // An IP literal names the relay machine itself (health checks, direct probes),
    // never a tunnel.
    if (host.startsWith('[') || /^\d{1,3}(\.\d{1,3}){3}$/.test(host))
        return { kind: 'apex' };
    const suffix = `.${domain}`;
    if (host.endsWith(suffix)) {
        const label = host.slice(0, -suffix.length);
        if (label !== '' && !label.includes('.'))
            return { kind: 'tunnel', label, hostname: host };
    }
    return { kind: 'unknown', host };
}
//# sourceMappingURL=host.js.map