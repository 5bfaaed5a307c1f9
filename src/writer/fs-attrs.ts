/**
 * Extended attributes, POSIX ACLs and file capabilities of a source tree, the parts of a file's
 * metadata Node cannot read itself. They come from one `getfattr -R` run over the whole tree
 * (argv array, no shell), filtered to what pxar stores (spec pxar-format.md §6):
 * - `user.*`, `trusted.*`, `security.NTACL` become XATTR items;
 * - `security.capability` becomes FCAPS;
 * - `system.posix_acl_access` / `_default` are decoded into pxar ACL items the way the PBS
 *   client does (mask -> ACL_GROUP_OBJ holds the owning group, entries sorted by id).
 * Without getfattr the tree is archived without them (the caller warns).
 */
import { spawnSync } from 'node:child_process';
import { ACL_NO_MASK } from '../pxar/format.js';
import type { PxarAcl, PxarAclGroup, PxarAclUser, PxarXattr } from './pxar-encoder.js';

export interface FileAttrs {
  xattrs: PxarXattr[];
  acl: PxarAcl | undefined;
  fcaps: Uint8Array | undefined;
}

const PATTERN = '^(user\\.|trusted\\.|security\\.capability$|security\\.NTACL$|system\\.posix_acl_(access|default)$)';

let toolChecked: boolean | undefined;

/** Whether `getfattr` can be run. */
export function haveGetfattr(): boolean {
  if (toolChecked === undefined) {
    const r = spawnSync('getfattr', ['--version'], { stdio: ['ignore', 'pipe', 'ignore'] });
    toolChecked = r.status === 0;
  }
  return toolChecked;
}

/** Undoes getfattr's `\ooo` octal escaping; works on a latin1 string (one char per byte). */
function unescape(s: string): Buffer {
  return Buffer.from(s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))), 'latin1');
}

/**
 * Reads the attributes of every entry under `root` (symlinks not followed). Keys are the paths
 * relative to `root` as latin1 strings of the raw bytes ('' = root). Entries without stored
 * attributes are absent. Returns undefined when getfattr is missing.
 */
export function readTreeAttrs(root: string, onWarning?: (msg: string) => void): Map<string, FileAttrs> | undefined {
  if (!haveGetfattr()) return undefined;
  const r = spawnSync('getfattr', ['-R', '-P', '-h', '-d', '-m', PATTERN, '--absolute-names', '-e', 'hex', '--', '.'], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
    maxBuffer: 1024 * 1024 * 1024,
  });
  if (r.error !== undefined) {
    onWarning?.(`getfattr failed (${r.error.message}); archiving without xattrs and ACLs`);
    return undefined;
  }
  const err = r.stderr?.toString('utf8').trim();
  if (err) onWarning?.(`getfattr: ${err.split('\n')[0]}`);
  return parseGetfattr(r.stdout.toString('latin1'));
}

/** Parses `getfattr -d -e hex` output (latin1 string) into per-path attributes. */
export function parseGetfattr(text: string): Map<string, FileAttrs> {
  const out = new Map<string, FileAttrs>();
  let cur: FileAttrs | undefined;
  let access: Buffer | undefined;
  let dflt: Buffer | undefined;
  const close = (): void => {
    if (cur === undefined) return;
    cur.acl = aclFromXattrs(access, dflt);
    access = dflt = undefined;
  };
  for (const line of text.split('\n')) {
    if (line.startsWith('# file: ')) {
      close();
      let p = unescape(line.slice(8)).toString('latin1');
      if (p === '.') p = '';
      else if (p.startsWith('./')) p = p.slice(2);
      cur = { xattrs: [], acl: undefined, fcaps: undefined };
      out.set(p, cur);
      continue;
    }
    if (cur === undefined || line === '') continue;
    const eq = line.indexOf('=');
    const name = unescape(eq < 0 ? line : line.slice(0, eq));
    let raw = eq < 0 ? '' : line.slice(eq + 1);
    if (raw.startsWith('0x')) raw = raw.slice(2);
    const value = Buffer.from(raw, 'hex');
    const n = name.toString('latin1');
    if (n === 'system.posix_acl_access') access = value;
    else if (n === 'system.posix_acl_default') dflt = value;
    else if (n === 'security.capability') cur.fcaps = value;
    else cur.xattrs.push({ name, value });
  }
  close();
  return out;
}

// Linux posix_acl_xattr tags
const USER_OBJ = 0x01;
const USER = 0x02;
const GROUP_OBJ = 0x04;
const GROUP = 0x08;
const MASK = 0x10;
const OTHER = 0x20;

interface RawAclEntry {
  tag: number;
  perm: number;
  id: number;
}

function parseAclXattr(v: Buffer): RawAclEntry[] {
  // u32 version (2), then 8-byte entries: u16 tag, u16 perm, u32 id
  if (v.length < 4 || (v.length - 4) % 8 !== 0 || v.readUInt32LE(0) !== 2) return [];
  const out: RawAclEntry[] = [];
  for (let o = 4; o < v.length; o += 8) out.push({ tag: v.readUInt16LE(o), perm: v.readUInt16LE(o + 2) & 7, id: v.readUInt32LE(o + 4) });
  return out;
}

const byUser = (a: PxarAclUser, b: PxarAclUser) => a.uid - b.uid || Number(a.permissions) - Number(b.permissions);
const byGroup = (a: PxarAclGroup, b: PxarAclGroup) => a.gid - b.gid || Number(a.permissions) - Number(b.permissions);

/** The pxar ACL of one entry from its raw access/default ACL xattrs, as the PBS client builds it. */
export function aclFromXattrs(access: Buffer | undefined, dflt: Buffer | undefined): PxarAcl | undefined {
  const acl: PxarAcl = {};
  let any = false;
  if (access !== undefined) {
    const users: PxarAclUser[] = [];
    const groups: PxarAclGroup[] = [];
    let groupObj: number | undefined;
    let mask = false;
    for (const e of parseAclXattr(access)) {
      if (e.tag === USER) users.push({ uid: e.id, permissions: e.perm });
      else if (e.tag === GROUP) groups.push({ gid: e.id, permissions: e.perm });
      else if (e.tag === GROUP_OBJ) groupObj = e.perm;
      else if (e.tag === MASK) mask = true;
    }
    if (users.length) (acl.users = users.sort(byUser)), (any = true);
    if (groups.length) (acl.groups = groups.sort(byGroup)), (any = true);
    // With a mask the stat group bits hold the mask; the real group permissions go here.
    if (mask && groupObj !== undefined) (acl.groupObj = groupObj), (any = true);
  }
  if (dflt !== undefined) {
    const users: PxarAclUser[] = [];
    const groups: PxarAclGroup[] = [];
    let userObj: bigint | undefined, groupObj: bigint | undefined, other: bigint | undefined, mask: bigint | undefined;
    for (const e of parseAclXattr(dflt)) {
      if (e.tag === USER) users.push({ uid: e.id, permissions: e.perm });
      else if (e.tag === GROUP) groups.push({ gid: e.id, permissions: e.perm });
      else if (e.tag === USER_OBJ) userObj = BigInt(e.perm);
      else if (e.tag === GROUP_OBJ) groupObj = BigInt(e.perm);
      else if (e.tag === OTHER) other = BigInt(e.perm);
      else if (e.tag === MASK) mask = BigInt(e.perm);
    }
    if (userObj !== undefined || groupObj !== undefined || other !== undefined || mask !== undefined) {
      acl.default = {
        userObj: userObj ?? ACL_NO_MASK,
        groupObj: groupObj ?? ACL_NO_MASK,
        other: other ?? ACL_NO_MASK,
        mask: mask ?? ACL_NO_MASK,
      };
      any = true;
    }
    if (users.length) (acl.defaultUsers = users.sort(byUser)), (any = true);
    if (groups.length) (acl.defaultGroups = groups.sort(byGroup)), (any = true);
  }
  return any ? acl : undefined;
}
