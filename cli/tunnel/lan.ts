/**
 * `--lan`: which address of this machine other devices on the local network (a phone on
 * the same Wi-Fi) reach it at. The embedded relay also listens there.
 */
import { isIP } from 'node:net';
import os from 'node:os';
import { ConfigError } from '../../shared/errors.js';

/** Private IPv4 ranges (RFC 1918), where home and office networks live. */
function isPrivateIpv4(address: string): boolean {
  const [a, b] = address.split('.').map(Number) as [number, number];
  return a === 10 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168);
}

/**
 * The LAN address: `override` (QUICK_TUNNEL_LAN_ADDRESS) if given, else this machine's
 * first private IPv4 address (10/8, 172.16/12, 192.168/16), else its first other
 * non-loopback IPv4 address.
 */
export function lanAddress(
  override: string | undefined,
  interfaces: NodeJS.Dict<os.NetworkInterfaceInfo[]> = os.networkInterfaces(),
): string {
  if (override !== undefined) {
    if (isIP(override) === 0) {
      throw new ConfigError(
        `QUICK_TUNNEL_LAN_ADDRESS='${override}' is not an IP address of this machine`,
      );
    }
    return override;
  }
  const candidates = Object.values(interfaces)
    .flatMap((list) => list ?? [])
    .filter((i) => i.family === 'IPv4' && !i.internal)
    .map((i) => i.address);
  const found = candidates.find(isPrivateIpv4) ?? candidates[0];
  if (found === undefined) {
    throw new ConfigError('--lan: this machine has no network address besides loopback', {
      hint: 'connect to a network (Wi-Fi or Ethernet), or set QUICK_TUNNEL_LAN_ADDRESS to the address to use',
    });
  }
  return found;
}
