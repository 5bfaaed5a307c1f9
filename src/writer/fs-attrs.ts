/**
 * Extended attributes, POSIX ACLs, file capabilities, chattr flags and quota project ids of a
 * source tree: the parts of a file's metadata Node cannot read itself. One helper process reads
 * them for the whole tree (argv arrays, no shell):
 * - python3 when present: listxattr order (as upstream keeps it), FS_IOC_GETFLAGS flags and
 *   FS_IOC_FSGETXATTR project ids, exactly like the PBS client's ioctls;
 * - else `getfattr -R` (names come sorted; no flags or project ids).
 * Filtered to what pxar stores (spec pxar-format.md §6):
 * - `user.*`, `trusted.*`, `security.NTACL` become XATTR items;
 * - `security.capability` becomes FCAPS;
 * - `system.posix_acl_access` / `_default` are decoded into pxar ACL items the way the PBS
 *   client does (mask -> ACL_GROUP_OBJ holds the owning group, entries sorted by id).
 * Without getfattr the tree is archived without them (the caller warns).
 */
import { spawnSync } from 'node:child_process';
import { childProcessEnv } from '../crypto/passphrase.js';
import { ACL_NO_MASK } from '../pxar/format.js';
import type { PxarAcl, PxarAclGroup, PxarAclUser, PxarXattr } from './pxar-encoder.js';

export interface FileAttrs {
  xattrs: PxarXattr[];
  acl: PxarAcl | undefined;
  fcaps: Uint8Array | undefined;
  /** pxar ENTRY flags from the chattr flags (spec §13.2); 0 when unknown. */
  flags: number;
  /** Quota project id, when non-zero. */
  projectId: number | undefined;
}

export type AttrsTool = 'auto' | 'python' | 'getfattr';

const PATTERN = '^(user\\.|trusted\\.|security\\.capability$|security\\.NTACL$|system\\.posix_acl_(access|default)$)';

let toolChecked: boolean | undefined;

/** Whether `getfattr` can be run. */
export function haveGetfattr(): boolean {
  if (toolChecked === undefined) {
    const r = spawnSync('getfattr', ['--version'], { stdio: ['ignore', 'pipe', 'ignore'], env: childProcessEnv() });
    toolChecked = r.status === 0;
  }
  return toolChecked;
}

/** Undoes getfattr's `\ooo` octal escaping; works on a latin1 string (one char per byte). */
function unescape(s: string): Buffer {
  return Buffer.from(s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))), 'latin1');
}

/**
 * Reads the attributes of every file and directory under `root` (symlinks not followed). Keys are
 * the paths relative to `root` as latin1 strings of the raw bytes ('' = root). Entries without
 * stored attributes are absent. Returns undefined when no helper tool is available.
 */
export function readTreeAttrs(root: string, onWarning?: (msg: string) => void, tool: AttrsTool = 'auto'): Map<string, FileAttrs> | undefined {
  if (tool !== 'getfattr' && havePython()) {
    const r = readWithPython(root, onWarning);
    if (r !== undefined || tool === 'python') return r;
  }
  if (tool === 'python' || !haveGetfattr()) return undefined;
  const r = spawnSync('getfattr', ['-R', '-P', '-h', '-d', '-m', PATTERN, '--absolute-names', '-e', 'hex', '--', '.'], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
    maxBuffer: 1024 * 1024 * 1024,
    env: childProcessEnv(),
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
      cur = { xattrs: [], acl: undefined, fcaps: undefined, flags: 0, projectId: undefined };
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

/** The python3 interpreter's real path ('' when unusable), found once (a pyenv shim is slow). */
let python: string | undefined;

export function havePython(): boolean {
  if (python === undefined) {
    const r = spawnSync('python3', ['-c', 'import os, sys, fcntl; os.listxattr; print(sys.executable)'], {
      stdio: ['ignore', 'pipe', 'ignore'],
      env: childProcessEnv(),
    });
    python = r.status === 0 ? r.stdout.toString().trim() : '';
  }
  return python !== '';
}

/**
 * Walks the tree without following symlinks; for files and directories prints
 * `X <rel hex> <name hex> <value hex>` per kept xattr (listxattr order) and
 * `F <rel hex> <fs flags> <project id>` when either is non-zero. Iterative (no recursion limit).
 */
const PY_SCRIPT = String.raw`
import os, sys, fcntl, struct
w = sys.stdout.buffer.write
KEEP = (b'user.', b'trusted.')
EXACT = (b'security.capability', b'security.NTACL', b'system.posix_acl_access', b'system.posix_acl_default')
def one(path, rel, isdir):
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        names = []
    for n in names:
        b = os.fsencode(n)
        if not (b.startswith(KEEP) or b in EXACT):
            continue
        try:
            v = os.getxattr(path, n, follow_symlinks=False)
        except OSError:
            continue
        w(b'X ' + rel.hex().encode() + b' ' + b.hex().encode() + b' ' + v.hex().encode() + b'\n')
    flags = proj = 0
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | (os.O_DIRECTORY if isdir else 0))
    except OSError:
        return
    try:
        try:
            flags = struct.unpack('<i', fcntl.ioctl(fd, 0x80086601, b'\0' * 8)[:4])[0] & 0xffffffff
        except OSError:
            pass
        try:
            proj = struct.unpack('<7I', fcntl.ioctl(fd, 0x801c581f, b'\0' * 28))[3]
        except OSError:
            pass
    finally:
        os.close(fd)
    if flags or proj:
        w(b'F ' + rel.hex().encode() + b' %d %d\n' % (flags, proj))
stack = [(os.fsencode(sys.argv[1]), b'')]
while stack:
    path, rel = stack.pop()
    one(path, rel, True)
    try:
        entries = list(os.scandir(path))
    except OSError:
        continue
    for e in entries:
        r = rel + b'/' + e.name if rel else e.name
        try:
            if e.is_dir(follow_symlinks=False):
                stack.append((e.path, r))
            elif e.is_file(follow_symlinks=False):
                one(e.path, r, False)
        except OSError:
            pass
`;

// chattr (FS_*_FL) bit -> pxar ENTRY flag (upstream CHATTR_MAP, spec §13.2)
const CHATTR_MAP: [number, number][] = [
  [0x20, 0x10000], // APPEND
  [0x80, 0x20000], // NOATIME
  [0x4, 0x40000], // COMPR
  [0x800000, 0x80000], // NOCOW
  [0x40, 0x100000], // NODUMP
  [0x10000, 0x200000], // DIRSYNC
  [0x10, 0x400000], // IMMUTABLE
  [0x8, 0x800000], // SYNC
  [0x400, 0x1000000], // NOCOMP
  [0x20000000, 0x2000000], // PROJINHERIT
];

export function pxarFlagsFromChattr(fsFlags: number): number {
  let f = 0;
  for (const [fs, px] of CHATTR_MAP) if ((fsFlags & fs) !== 0) f |= px;
  return f;
}

function readWithPython(root: string, onWarning?: (msg: string) => void): Map<string, FileAttrs> | undefined {
  const r = spawnSync(python!, ['-I', '-S', '-c', PY_SCRIPT, root], {
    stdio: ['ignore', 'pipe', 'pipe'],
    maxBuffer: 1024 * 1024 * 1024,
    env: childProcessEnv(),
  });
  if (r.error !== undefined || r.status !== 0) {
    onWarning?.(`reading xattrs with python3 failed (${r.error?.message ?? r.stderr?.toString().trim().split('\n').pop() ?? 'exit ' + r.status})`);
    return undefined;
  }
  return parsePythonAttrs(r.stdout.toString('latin1'));
}

/** Parses the helper's output (a latin1 string). */
export function parsePythonAttrs(text: string): Map<string, FileAttrs> {
  const out = new Map<string, FileAttrs>();
  const raw = new Map<string, { access?: Buffer; dflt?: Buffer }>();
  const get = (relHex: string): FileAttrs => {
    const key = Buffer.from(relHex, 'hex').toString('latin1');
    let a = out.get(key);
    if (a === undefined) {
      a = { xattrs: [], acl: undefined, fcaps: undefined, flags: 0, projectId: undefined };
      out.set(key, a);
    }
    return a;
  };
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    if (f[0] === 'X' && f.length === 4) {
      const a = get(f[1]!);
      const name = Buffer.from(f[2]!, 'hex');
      const value = Buffer.from(f[3]!, 'hex');
      const n = name.toString('latin1');
      if (n === 'security.capability') a.fcaps = value;
      else if (n === 'system.posix_acl_access' || n === 'system.posix_acl_default') {
        const r = raw.get(f[1]!) ?? {};
        if (n === 'system.posix_acl_access') r.access = value;
        else r.dflt = value;
        raw.set(f[1]!, r);
      } else a.xattrs.push({ name, value });
    } else if (f[0] === 'F' && f.length === 4) {
      const a = get(f[1]!);
      a.flags = pxarFlagsFromChattr(Number(f[2]));
      const p = Number(f[3]);
      a.projectId = p > 0 ? p : undefined;
    }
  }
  for (const [relHex, r] of raw) get(relHex).acl = aclFromXattrs(r.access, r.dflt);
  return out;
}
