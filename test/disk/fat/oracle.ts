/**
 * Shared by the FAT and exFAT tests: the known source tree the images are built from, a walk of
 * a Filesystem, and The Sleuth Kit's view of the same image (`fls -r -m`, `icat`) as the oracle.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Filesystem } from '../../../src/disk/filesystem.js';

export interface TreeFile {
  path: string;
  dir: boolean;
  size: number;
  mtime: number;
  sha256: string;
}

const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;

export function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

/** Deterministic bytes (a xorshift stream), so multi-cluster files are not runs of one byte. */
export function pattern(len: number, seed: number): Buffer {
  const b = Buffer.alloc(len);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < len; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}

/** 2021-03-04T05:06:08Z plus i minutes: even seconds, which FAT's 2-second times keep. */
export function knownMtime(i: number): number {
  return Date.UTC(2021, 2, 4, 5, 6, 8) / 1000 + i * 60;
}

/**
 * Writes the source tree: long, unicode and 8.3 names, nesting, empty and multi-cluster files.
 * `astral` adds a name outside the Basic Multilingual Plane (mtools 4.0.32 cuts such characters
 * to 16 bits, so the FAT images leave it out; utf16.test.ts covers surrogate pairs there).
 */
export function writeSourceTree(root: string, bigSize: number, astral: boolean): void {
  const files: [string, Buffer][] = [
    ['hello.txt', Buffer.from('hello, world\n')],
    ['Long File Name with spaces.txt', Buffer.from('long name\n')],
    ['Ünïcødé — ✓.txt', Buffer.from('unicode\n')],
    ['日本語のファイル名.txt', Buffer.from('cjk\n')],
    ['lower.txt', Buffer.from('lower\n')],
    ['UPPER.TXT', Buffer.from('upper\n')],
    ['MiXeD.Txt', Buffer.from('mixed\n')],
    ['empty.bin', Buffer.alloc(0)],
    ['big.bin', pattern(bigSize, 7)],
    ['readonly.txt', Buffer.from('read only\n')],
    ['nested/level1/level2/level3/deep.txt', Buffer.from('deep\n')],
    ['nested/level1/sibling.bin', pattern(5000, 11)],
  ];
  if (astral) files.push(['emoji 😀 astral.txt', Buffer.from('astral plane, a surrogate pair in UTF-16\n')]);
  for (let i = 0; i < 60; i++) files.push([`many/a file with a fairly long name number ${i}.dat`, pattern(100 + i, 100 + i)]);
  let n = 0;
  for (const [rel, data] of files) {
    const p = join(root, rel);
    mkdirSync(join(p, '..'), { recursive: true });
    writeFileSync(p, data);
    utimesSync(p, knownMtime(n), knownMtime(n));
    n++;
  }
  mkdirSync(join(root, 'emptydir'), { recursive: true });
  for (const d of ['emptydir', 'many', 'nested/level1/level2/level3', 'nested/level1/level2', 'nested/level1', 'nested']) {
    utimesSync(join(root, d), knownMtime(n), knownMtime(n));
    n++;
  }
}

/** The source tree as path -> entry (directories with size 0 and no hash). */
export function readSourceTree(root: string): Map<string, TreeFile> {
  const out = new Map<string, TreeFile>();
  const walk = (dir: string, prefix: string): void => {
    for (const name of readdirSync(dir).sort()) {
      const p = join(dir, name);
      const st = statSync(p);
      const path = prefix + name;
      if (st.isDirectory()) {
        out.set(path, { path, dir: true, size: 0, mtime: Math.floor(st.mtimeMs / 1000), sha256: '' });
        walk(p, path + '/');
      } else {
        out.set(path, { path, dir: false, size: st.size, mtime: Math.floor(st.mtimeMs / 1000), sha256: sha256(readFileSync(p)) });
      }
    }
  };
  walk(root, '');
  return out;
}

export interface WalkedFile extends TreeFile {
  ino: number;
  mode: number;
  atime: number;
  crtime: number | undefined;
}

/** Every file below the root of `fs`, read through readdir, lookup, stat and read. */
export async function walkFilesystem(fs: Filesystem): Promise<Map<string, WalkedFile>> {
  const out = new Map<string, WalkedFile>();
  const walk = async (ino: number, prefix: string): Promise<void> => {
    for (const e of await fs.readdir(ino)) {
      const name = e.name.toString('utf8');
      if ((await fs.lookup(ino, e.name)) !== e.ino) throw new Error(`lookup of ${prefix}${name} disagrees with readdir`);
      const st = await fs.stat(e.ino);
      const dir = (st.mode & S_IFMT) === S_IFDIR;
      const path = prefix + name;
      const data = dir ? Buffer.alloc(0) : await fs.read(e.ino, 0, st.size + 4096);
      if (!dir && data.length !== st.size) throw new Error(`${path}: read ${data.length} bytes of ${st.size}`);
      out.set(path, {
        path,
        dir,
        size: dir ? 0 : st.size,
        mtime: st.mtime.sec,
        sha256: dir ? '' : sha256(data),
        ino: e.ino,
        mode: st.mode,
        atime: st.atime.sec,
        crtime: st.crtime?.sec,
      });
      if (dir) await walk(e.ino, path + '/');
    }
  };
  await walk(fs.rootIno, '');
  return out;
}

export interface TskEntry {
  path: string;
  ino: number;
  dir: boolean;
  size: number;
  atime: number;
  mtime: number;
  crtime: number;
}

/** `fls -r -m /` of the image under TZ=UTC, without TSK's virtual files, label entries and deleted names. */
export function tskList(image: string): TskEntry[] {
  const out = execFileSync('fls', ['-r', '-m', '/', image], { env: { ...process.env, TZ: 'UTC' }, maxBuffer: 64 << 20 }).toString('utf8');
  const entries: TskEntry[] = [];
  for (const line of out.split('\n')) {
    if (line === '') continue;
    const f = line.split('|');
    const name = f[1]!;
    if (/^\/\$(MBR|FAT\d|OrphanFiles|ALLOC_BITMAP|UPCASE_TABLE)$/.test(name) || name.endsWith('(Volume Label Entry)') || name.includes('(deleted')) continue;
    entries.push({
      path: name.slice(1),
      ino: Number(f[2]),
      dir: f[3]!.startsWith('d/'),
      size: Number(f[6]),
      atime: Number(f[7]),
      mtime: Number(f[8]),
      crtime: Number(f[10]),
    });
  }
  return entries;
}

/** `fls -r -m /` lines naming deleted entries. */
export function tskDeleted(image: string): string[] {
  const out = execFileSync('fls', ['-r', '-m', '/', image], { env: { ...process.env, TZ: 'UTC' } }).toString('utf8');
  return out.split('\n').filter((l) => l.includes('(deleted'));
}

export function tskContent(image: string, ino: number): Buffer {
  return execFileSync('icat', [image, String(ino)], { maxBuffer: 256 << 20 });
}

export function run(cmd: string, args: string[], env: Record<string, string> = {}): string {
  return execFileSync(cmd, args, { env: { ...process.env, TZ: 'UTC', ...env }, stdio: ['ignore', 'pipe', 'pipe'] }).toString('utf8');
}
