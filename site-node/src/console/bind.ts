import { BlockList, isIP } from 'node:net';
import { SiteError } from '../errors.js';

/**
 * Where the site console may listen and whom it answers. The console shows patient data and
 * approves studies, so it is never exposed beyond the hospital: loopback (RFC 1122 §3.2.1.3,
 * RFC 4291 §2.5.3), the private ranges of RFC 1918 and RFC 4193 (unique local IPv6), and link-local
 * (RFC 3927, RFC 4291 §2.5.6). The unspecified address (0.0.0.0, ::: every interface) and public
 * addresses are refused when binding, and requests from any other address are refused (403) even
 * if the console was somehow reached (defence in depth: a port forward, a misconfigured proxy).
 */
const LOCAL = new BlockList();
LOCAL.addSubnet('127.0.0.0', 8, 'ipv4');
LOCAL.addSubnet('10.0.0.0', 8, 'ipv4');
LOCAL.addSubnet('172.16.0.0', 12, 'ipv4');
LOCAL.addSubnet('192.168.0.0', 16, 'ipv4');
LOCAL.addSubnet('169.254.0.0', 16, 'ipv4');
LOCAL.addAddress('::1', 'ipv6');
LOCAL.addSubnet('fc00::', 7, 'ipv6');
LOCAL.addSubnet('fe80::', 10, 'ipv6');

/** `::ffff:10.1.2.3` (an IPv4 peer on a dual-stack socket) → `10.1.2.3`; a zone id (`fe80::1%eth0`) dropped. */
function normalise(addr: string): string {
  const a = addr.trim().replace(/^\[|\]$/g, '');
  const noZone = a.replace(/%.*$/, '');
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(noZone);
  return mapped ? mapped[1] : noZone;
}

/** True for a loopback, private (RFC 1918, RFC 4193) or link-local IP address. */
export function isLocalAddress(addr: string | undefined): boolean {
  if (!addr) return false;
  const a = normalise(addr);
  const family = isIP(a);
  if (family === 0) return false;
  return LOCAL.check(a, family === 4 ? 'ipv4' : 'ipv6');
}

/**
 * The host the console may bind to, or a TWF_E_CONSOLE_BIND error saying why not. `localhost` is
 * taken as 127.0.0.1 (never resolved: a hosts file could point it elsewhere); any other name is
 * refused, since what it resolves to can change after the check.
 */
export function checkConsoleHost(host: string): string {
  const h = normalise(host);
  if (h.toLowerCase() === 'localhost') return '127.0.0.1';
  const family = isIP(h);
  if (family === 0) throw new SiteError('TWF_E_CONSOLE_BIND', `"${host}" is not an IP address; give the console an address (127.0.0.1, or this machine's hospital-network address)`);
  if (h === '0.0.0.0' || /^[0:]+$/.test(h)) throw new SiteError('TWF_E_CONSOLE_BIND', `"${host}" means every network interface, which would expose the console beyond this machine`);
  if (!isLocalAddress(h)) throw new SiteError('TWF_E_CONSOLE_BIND', `"${host}" is a public address: the console would be reachable from outside the hospital`);
  return h;
}

/** `http://HOST:PORT/` with an IPv6 host in brackets. */
export function consoleUrl(host: string, port: number): string {
  return `http://${isIP(host) === 6 ? `[${host}]` : host}:${port}/`;
}
