/**
 * The PBS repository string `[[AUTHID@]HOST[:PORT]:]STORE`, parsed by the rules of upstream's
 * BACKUP_REPO_URL_REGEX: defaults `root@pam`, `localhost` and port 8007; an auth id needs a
 * host; IPv6 hosts are bracketed; the port is a 16-bit number.
 */
import { UsageError } from '../../errors.js';

export interface PbsAddress {
  /** `user@realm` or, for an API token, `user@realm!name`. */
  authId: string;
  /** Host as written: a DNS name, an IPv4 address or a bracketed IPv6 address. */
  host: string;
  port: number;
  store: string;
}

export const DEFAULT_AUTH_ID = 'root@pam';
export const DEFAULT_HOST = 'localhost';
export const DEFAULT_PORT = 8007;

const SAFEID = '[A-Za-z0-9_][A-Za-z0-9._\\-]*';
const USERNAME = '[^\\s:/\\x00-\\x1f\\x7f]+';
const USERID = `${USERNAME}@${SAFEID}`;
const TOKENID = `${USERID}!${SAFEID}`;
const DNSLABEL = '[a-zA-Z0-9](?:[a-zA-Z0-9\\-]*[a-zA-Z0-9])?';
const DNSNAME = `(?:${DNSLABEL}\\.)*${DNSLABEL}`;
const IPV4 = '(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])';
const IPV6_BRACKET = '\\[[0-9A-Fa-f:.]+\\]';

const REPO_RE = new RegExp(
  `^(?:(?:(${TOKENID}|${USERID})@)?(${IPV4}|${IPV6_BRACKET}|${DNSNAME}):)?(?:([0-9]{1,5}):)?(${SAFEID})$`,
);

/** Whether an auth id names an API token (`user@realm!name`). */
export function isTokenAuthId(authId: string): boolean {
  return authId.includes('!');
}

export function parsePbsAddress(spec: string): PbsAddress {
  const m = REPO_RE.exec(spec);
  if (m === null) {
    throw new UsageError(
      `repository ${JSON.stringify(spec)} is neither a datastore path nor [[AUTHID@]HOST[:PORT]:]STORE (e.g. root@pam@pbs.example:8007:store1)`,
    );
  }
  const [, authId, host, port, store] = m;
  let portNo = DEFAULT_PORT;
  if (port !== undefined) {
    portNo = Number(port);
    if (portNo < 1 || portNo > 65535) throw new UsageError(`repository ${JSON.stringify(spec)}: port ${port} is out of range`);
  }
  if (host !== undefined && host.startsWith('[') && !/^\[[0-9A-Fa-f:]*:[0-9A-Fa-f:.]*\]$/.test(host)) {
    throw new UsageError(`repository ${JSON.stringify(spec)}: ${host} is not an IPv6 address`);
  }
  return { authId: authId ?? DEFAULT_AUTH_ID, host: host ?? DEFAULT_HOST, port: portNo, store: store! };
}

/** `host:port:store`, how messages name the repository (the secret-free part). */
export function formatPbsAddress(a: PbsAddress): string {
  return `${a.host}:${a.port}:${a.store}`;
}

/** The host as a socket wants it: IPv6 without brackets. */
export function socketHost(a: PbsAddress): string {
  return a.host.startsWith('[') ? a.host.slice(1, -1) : a.host;
}
