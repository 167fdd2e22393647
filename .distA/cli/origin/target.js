/**
 * Parses the `<target>` argument of `quick-tunnel <target>`: the local origin that
 * visitor requests are forwarded to.
 *
 *     3000                      → http://localhost:3000
 *     localhost:3000            → http://localhost:3000
 *     192.168.1.20:8080         → http://192.168.1.20:8080
 *     [::1]:3000                → http://[::1]:3000
 *     http://myapp.test:8080    → as written
 *     https://localhost:8443    → TLS to the origin
 *
 * `localhost` (and a bare port) is special: dev servers listen on 127.0.0.1 or on ::1
 * depending on the OS and the tool, so the proxy tries both and keeps using whichever
 * answered (see OriginProxy). Bad input throws a ConfigError that says what to type.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { ConfigError } from '../../shared/errors.js';
/** Addresses tried for `localhost`, in default order (IPv4 first: most servers bind it). */
export const LOCALHOST_ADDRESSES = Object.freeze(['127.0.0.1', '::1']);
const USAGE = 'use 3000, localhost:3000 or http://localhost:3000';
const HOSTNAME_RE = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*\.?$/i;
/** Parses PORT | HOST:PORT | [IPv6]:PORT | http(s)://HOST[:PORT]. Throws ConfigError. */
export function parseTarget(input) {
    const text = input.trim();
    if (text === '')
        throw new ConfigError(`no target given: ${USAGE}`);
    if (/^\d+$/.test(text))
        return makeTarget('http', 'localhost', parsePort(text, text));
    const scheme = /^([a-z][a-z0-9+.-]*):\/\/(.*)$/i.exec(text);
    if (scheme !== null) {
        const name = scheme[1].toLowerCase();
        if (name !== 'http' && name !== 'https') {
            throw new ConfigError(`unknown scheme '${scheme[1]}://' in '${text}': the origin must be http:// or https:// (${USAGE})`);
        }
        let rest = scheme[2];
        if (rest.endsWith('/'))
            rest = rest.slice(0, -1);
        if (/[/?#@]/.test(rest)) {
            throw new ConfigError(`'${text}' has a path, query or credentials: give only scheme, host and port, e.g. ${name}://localhost:3000`);
        }
        if (rest === '' || rest.startsWith(':')) {
            throw new ConfigError(`'${text}' has no host: write it like ${name}://localhost:3000`);
        }
        const { hostname, port } = splitHostPort(rest, text, name === 'https' ? 443 : 80);
        return makeTarget(name, hostname, port);
    }
    if (!text.includes(':'))
        throw new ConfigError(`'${text}' is not a port or URL: ${USAGE}`);
    const { hostname, port } = splitHostPort(text, text, undefined);
    return makeTarget('http', hostname, port);
}
function splitHostPort(hostPort, input, defaultPort) {
    let host;
    let portText;
    if (hostPort.startsWith('[')) {
        const m = /^\[([^\]]*)\](?::(.*))?$/.exec(hostPort);
        if (m === null || !isIPv6(m[1])) {
            throw new ConfigError(`'${input}' is not a valid IPv6 address and port: write it like [::1]:3000`);
        }
        host = m[1];
        portText = m[2];
    }
    else {
        const colons = hostPort.split(':').length - 1;
        if (colons > 1) {
            throw new ConfigError(`'${input}' looks like an IPv6 address: put it in brackets, e.g. [::1]:3000`);
        }
        const i = hostPort.indexOf(':');
        host = i < 0 ? hostPort : hostPort.slice(0, i);
        portText = i < 0 ? undefined : hostPort.slice(i + 1);
        if (host === '')
            host = 'localhost'; // ':3000'
        if (!isIPv4(host) && !HOSTNAME_RE.test(host)) {
            throw new ConfigError(`'${host}' in '${input}' is not a valid host name: ${USAGE}`);
        }
    }
    let port;
    if (portText === undefined || portText === '') {
        if (defaultPort === undefined) {
            throw new ConfigError(`'${input}' has no port: ${USAGE}`);
        }
        port = defaultPort;
    }
    else {
        port = parsePort(portText, input);
    }
    return { hostname: host.toLowerCase(), port };
}
function parsePort(text, input) {
    if (!/^\d+$/.test(text)) {
        throw new ConfigError(`'${text}' in '${input}' is not a port: use a number from 1 to 65535`);
    }
    const port = Number(text);
    if (port < 1 || port > 65535) {
        throw new ConfigError(`port ${text} is out of range: use a number from 1 to 65535`);
    }
    return port;
}
function makeTarget(protocol, hostname, port) {
    const host = hostname.endsWith('.') ? hostname.slice(0, -1) : hostname;
    const bracketed = isIPv6(host) ? `[${host}]` : host;
    const defaultPort = protocol === 'https' ? 443 : 80;
    const hostPort = `${bracketed}:${port}`;
    return Object.freeze({
        protocol,
        hostname: host,
        port,
        localhost: host === 'localhost',
        hostHeader: port === defaultPort ? bracketed : hostPort,
        label: protocol === 'https' ? `https://${hostPort}` : hostPort,
    });
}
//# sourceMappingURL=target.js.map