/**
 * Test-time ext images and the oracles they are checked against: a known source tree (written
 * with xattrs, ACLs, devices, 32-bit owners, holes), `mkfs.ext* -d` over it, The Sleuth Kit
 * (`fls -r -m`, `icat`) and debugfs (`stat`, nanosecond times and crtime).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chownSync, closeSync, linkSync, mkdirSync, openSync, symlinkSync, utimesSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { Filesystem } from '../../../src/disk/filesystem.js';

export const S_IFMT = 0o170000;
export const S_IFDIR = 0o040000;
export const S_IFREG = 0o100000;
export const S_IFLNK = 0o120000;

export function run(cmd: string, args: string[], input?: string): string {
  return execFileSync(cmd, args, { encoding: 'latin1', maxBuffer: 256 * 1024 * 1024, input, stdio: ['pipe', 'pipe', 'pipe'] });
}

/** Names exercised besides plain ASCII: UTF-8 and bytes that are not UTF-8. */
export const UNICODE_NAME = 'héllo wörld ✓ 🗂.txt';
export const RAW_NAME = Buffer.from([0x72, 0x61, 0x77, 0xff, 0xfe, 0x80, 0x2e, 0x62, 0x69, 0x6e]);
export const LONG_TARGET = `${'deep/'.repeat(40)}target`;
export const MANY_FILES = 700;
export const SPARSE_SIZE = 96 * 1024 * 1024 + 77;

function at(base: string, ...parts: (string | Buffer)[]): Buffer {
  return Buffer.concat([Buffer.from(base), ...parts.flatMap((p) => [Buffer.from('/'), Buffer.from(p)])]);
}

/** Writes the source tree under `root` (run as root: devices and chown). */
export function buildSourceTree(root: string): void {
  mkdirSync(root, { recursive: true });
  writeFileSync(join(root, 'hello.txt'), 'hello, ext4\n');
  writeFileSync(join(root, 'empty'), '');
  writeFileSync(join(root, 'random.bin'), randomBytes(3 * 1024 * 1024 + 123));
  writeFileSync(join(root, 'small-inline'), 'tiny');
  writeFileSync(join(root, 'inline-tail'), 'x'.repeat(100));
  writeFileSync(join(root, UNICODE_NAME), 'unicode\n');
  writeFileSync(at(root, RAW_NAME), 'raw name\n');
  // A file with holes: data at the start, in the middle and at the end.
  const fd = openSync(join(root, 'sparse.img'), 'w');
  writeSync(fd, Buffer.from('start'), 0, 5, 0);
  writeSync(fd, randomBytes(8192), 0, 8192, 40 * 1024 * 1024);
  writeSync(fd, Buffer.from('the end'), 0, 7, SPARSE_SIZE - 7);
  closeSync(fd);
  symlinkSync('hello.txt', join(root, 'fast-link'));
  symlinkSync(LONG_TARGET, join(root, 'slow-link'));
  linkSync(join(root, 'hello.txt'), join(root, 'hardlink'));
  run('mknod', [join(root, 'chardev'), 'c', '1', '3']);
  run('mknod', [join(root, 'blockdev'), 'b', '259', '65537']);
  run('mkfifo', [join(root, 'fifo')]);
  writeFileSync(join(root, 'owned'), 'owned by a 32-bit uid\n');
  chownSync(join(root, 'owned'), 100000, 70000);
  mkdirSync(join(root, 'many'));
  for (let i = 0; i < MANY_FILES; i++) writeFileSync(join(root, 'many', `entry-${i}-${'n'.repeat(i % 40)}`), `${i}\n`);
  mkdirSync(join(root, 'acl-dir'));
  writeFileSync(join(root, 'acl-dir', 'inherits'), 'x');
  run('setfattr', ['-n', 'user.comment', '-v', 'small value', join(root, 'hello.txt')]);
  run('setfattr', ['-n', 'user.big', '-v', `0x${'ab'.repeat(700)}`, join(root, 'random.bin')]);
  run('setfattr', ['-n', 'trusted.t', '-v', 'trusted value', join(root, 'owned')]);
  run('setfacl', ['-m', 'u:1234:rx,g:4321:r,u:100000:rw', join(root, 'owned')]);
  run('setfacl', ['-d', '-m', 'u:1234:rwx,g::rx', join(root, 'acl-dir')]);
  run('setfacl', ['-m', 'u:5:r', join(root, 'acl-dir')]);
  const t = 1_600_000_000;
  for (const name of ['hello.txt', 'random.bin', 'owned', 'sparse.img', 'empty']) utimesSync(join(root, name), t + 11, t + 22);
  utimesSync(join(root, 'many'), t + 33, t + 44);
}

export interface MkfsVariant {
  name: string;
  mkfs: string;
  args: string[];
  /** Size of the image in MiB. */
  sizeMiB: number;
  /** Run `e2fsck -fyD` afterwards: it rebuilds large directories as htrees. */
  htree: boolean;
}

export function makeImage(dir: string, src: string, v: MkfsVariant): string {
  const img = join(dir, `${v.name}.img`);
  run(v.mkfs, ['-q', '-F', '-L', `lbl-${v.name}`.slice(0, 16), ...v.args, '-d', src, img, `${v.sizeMiB}M`]);
  if (v.htree) {
    const r = spawnSync('e2fsck', ['-fyD', img], { encoding: 'latin1' });
    // 0: clean, 1: errors corrected (the directory optimisation counts as such).
    if (r.status !== 0 && r.status !== 1) throw new Error(`e2fsck -fyD ${img} failed (${r.status}): ${r.stdout}${r.stderr}`);
  }
  return img;
}

/** Nanosecond times and a post-2038 crtime set through debugfs (mkfs -d keeps seconds only). */
export const NS_EDITS: { path: string; field: string; value: string }[] = [
  { path: '/hello.txt', field: 'mtime_extra', value: String(123456789 << 2) },
  { path: '/hello.txt', field: 'atime_extra', value: String(987654321 << 2) },
  { path: '/owned', field: 'crtime', value: '20400102030405' },
  { path: '/owned', field: 'crtime_extra', value: String((555 << 2) | 1) },
];

export function setNsTimes(img: string): void {
  const cmds = NS_EDITS.map((e) => `sif ${e.path} ${e.field} ${e.value}`).join('\n');
  run('debugfs', ['-w', '-f', '-', img], cmds);
}

export interface Listed {
  path: Buffer;
  ino: number;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  size: number;
  atime: [number, number];
  mtime: [number, number];
  ctime: [number, number];
  crtime: [number, number] | undefined;
  rdev: number;
  target: Buffer | undefined;
  sha256: string | undefined;
  xattrs: Map<string, string>;
}

async function hashFile(fs: Filesystem, ino: number, size: number): Promise<string> {
  const h = createHash('sha256');
  const step = 8 * 1024 * 1024;
  for (let off = 0; off < size; off += step) h.update(await fs.read(ino, off, step));
  return h.digest('hex');
}

/** Everything the reader shows, walked from the root (lookup checked against readdir). */
export async function walkFs(fs: Filesystem): Promise<Listed[]> {
  const out: Listed[] = [];
  const walk = async (dir: number, prefix: Buffer): Promise<void> => {
    for (const e of await fs.readdir(dir)) {
      const st = await fs.stat(e.ino);
      const path = Buffer.concat([prefix, Buffer.from('/'), e.name]);
      const back = await fs.lookup(dir, e.name);
      if (back !== e.ino) throw new Error(`lookup(${path.toString()}) gave ${back}, readdir ${e.ino}`);
      const type = st.mode & S_IFMT;
      const xattrs = new Map<string, string>();
      for (const n of await fs.listxattr(e.ino)) xattrs.set(n.toString('latin1'), (await fs.getxattr(e.ino, n))!.toString('hex'));
      out.push({
        path,
        ino: e.ino,
        mode: st.mode,
        nlink: st.nlink,
        uid: st.uid,
        gid: st.gid,
        size: st.size,
        atime: [st.atime.sec, st.atime.nsec],
        mtime: [st.mtime.sec, st.mtime.nsec],
        ctime: [st.ctime.sec, st.ctime.nsec],
        crtime: st.crtime === undefined ? undefined : [st.crtime.sec, st.crtime.nsec],
        rdev: st.rdev,
        target: type === S_IFLNK ? await fs.readlink(e.ino) : undefined,
        sha256: type === S_IFREG ? await hashFile(fs, e.ino, st.size) : undefined,
        xattrs,
      });
      if (type === S_IFDIR) await walk(e.ino, path);
    }
  };
  await walk(fs.rootIno, Buffer.alloc(0));
  return out;
}

/** TSK's mode column: name type, meta type and the nine permission letters. */
export function tskMode(mode: number): string {
  const t = mode & S_IFMT;
  const letter = ({ [S_IFREG]: 'r', [S_IFDIR]: 'd', [S_IFLNK]: 'l', 0o020000: 'c', 0o060000: 'b', 0o010000: 'p', 0o140000: 's' } as Record<number, string>)[t] ?? '-';
  const rwx = (bits: number, special: boolean, ch: string): string =>
    (bits & 4 ? 'r' : '-') + (bits & 2 ? 'w' : '-') + (special ? (bits & 1 ? ch : ch.toUpperCase()) : bits & 1 ? 'x' : '-');
  return `${letter}/${letter}${rwx(mode >> 6, (mode & 0o4000) !== 0, 's')}${rwx(mode >> 3, (mode & 0o2000) !== 0, 's')}${rwx(mode, (mode & 0o1000) !== 0, 't')}`;
}

export interface TskRow {
  ino: number;
  mode: string;
  uid: number;
  gid: number;
  size: number;
  times: [number, number, number, number];
}

/** `fls -r -m /` rows keyed by path (symlink targets stripped from the name column). */
export function tskListing(img: string): Map<string, TskRow> {
  const rows = new Map<string, TskRow>();
  for (const line of run('fls', ['-r', '-m', '', img]).split('\n')) {
    if (line === '') continue;
    const f = line.split('|');
    if (f.length < 11) continue;
    const name = f[1]!.replace(/ -> .*$/, '');
    rows.set(name.startsWith('/') ? name : `/${name}`, {
      ino: Number(f[2]),
      mode: f[3]!,
      uid: Number(f[4]),
      gid: Number(f[5]),
      size: Number(f[6]),
      times: [Number(f[7]), Number(f[8]), Number(f[9]), Number(f[10])],
    });
  }
  return rows;
}

export function icatSha256(img: string, ino: number): string {
  const b = execFileSync('icat', [img, String(ino)], { maxBuffer: 512 * 1024 * 1024 });
  return createHash('sha256').update(b).digest('hex');
}

export interface DebugfsStat {
  links: number;
  uid: number;
  gid: number;
  size: number;
  times: Record<'ctime' | 'atime' | 'mtime' | 'crtime', [number, number] | undefined>;
}

/** `debugfs -R 'stat <ino>'` for many inodes in one run. */
export function debugfsStats(img: string, inos: number[]): Map<number, DebugfsStat> {
  const out = run('debugfs', ['-f', '-', img], inos.map((i) => `stat <${i}>`).join('\n'));
  const res = new Map<number, DebugfsStat>();
  const parts = out.split(/^debugfs: stat <(\d+)>\s*$/m);
  for (let k = 1; k + 1 < parts.length; k += 2) {
    const ino = Number(parts[k]);
    const body = parts[k + 1]!;
    const num = (re: RegExp): number => Number(re.exec(body)?.[1] ?? NaN);
    const time = (name: string): [number, number] | undefined => {
      const m = new RegExp(`^\\s*${name}: 0x([0-9a-f]+)(?::([0-9a-f]+))?`, 'm').exec(body);
      if (m === null) return undefined;
      const extra = m[2] === undefined ? 0 : parseInt(m[2], 16);
      return [(parseInt(m[1]!, 16) | 0) + (extra & 3) * 2 ** 32, extra >>> 2];
    };
    res.set(ino, {
      links: num(/Links: (\d+)/),
      uid: num(/User:\s+(\d+)/),
      gid: num(/Group:\s+(\d+)/),
      size: num(/Size: (\d+)/),
      times: { ctime: time('ctime'), atime: time('atime'), mtime: time('mtime'), crtime: time('crtime') },
    });
  }
  return res;
}

/** `getfattr -d -m -` of one source path: name -> hex value. */
export function sourceXattrs(path: Buffer): Map<string, string> {
  const r = spawnSync('getfattr', ['-h', '-d', '-m', '-', '-e', 'hex', '--absolute-names', path.toString('latin1')], { encoding: 'latin1' });
  const m = new Map<string, string>();
  for (const line of (r.stdout ?? '').split('\n')) {
    const eq = line.indexOf('=0x');
    if (eq > 0) m.set(line.slice(0, eq), line.slice(eq + 3));
  }
  return m;
}
