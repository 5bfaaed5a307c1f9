import { afterEach, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, linkSync, lstatSync, readFileSync, readdirSync, readlinkSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { dir, type DirectoryResult } from 'tmp-promise';
import { IoError } from '../../src/errors.js';
import { BufferReadAt, FileReadAt, type ReadAt } from '../../src/io/read-at.js';
import { restorePxar } from '../../src/restore/restore.js';
import { pxarDir } from '../helpers/paths.js';
import { buildV1 } from '../pxar/build.js';
import { loadListing, type ListingEntry } from '../pxar/listing.js';

const isRoot = process.getuid?.() === 0;
const temps: DirectoryResult[] = [];
async function tempDir(): Promise<string> {
  const t = await dir({ unsafeCleanup: true });
  temps.push(t);
  return t.path;
}
afterEach(async () => {
  for (const t of temps.splice(0)) await t.cleanup();
});

async function open(which: 'v1' | 'v2'): Promise<{ archive: ReadAt; payload: ReadAt | undefined; close: () => Promise<void> }> {
  if (which === 'v1') {
    const a = await FileReadAt.open(join(pxarDir, 'archive-v1.pxar'));
    return { archive: a, payload: undefined, close: () => a.close() };
  }
  const m = await FileReadAt.open(join(pxarDir, 'archive-v2.mpxar'));
  const p = await FileReadAt.open(join(pxarDir, 'archive-v2.ppxar'));
  return { archive: m, payload: p, close: async () => (await m.close(), await p.close()) };
}

/** Host path (raw bytes) of a listing path under `root`. */
function hostPath(root: string, e: ListingEntry): Buffer {
  return Buffer.concat([Buffer.from(root), Buffer.from(e.path_hex === '2f' ? '' : e.path_hex, 'hex')]);
}

/**
 * Runs a tool on a path; argv is UTF-8, so a file whose name is not gets probed through a
 * temporary hardlink with an ASCII name (xattrs and ACLs belong to the inode).
 */
function onPath(p: Buffer, run: (ascii: string) => string): string {
  if (Buffer.from(p.toString('utf8')).equals(p)) return run(p.toString('utf8'));
  const probe = join(temps[0]!.path, 'probe-link');
  linkSync(p, probe);
  try {
    return run(probe);
  } finally {
    unlinkSync(probe);
  }
}

/** getfattr -d of one path: name -> hex value. */
function xattrsOf(p: Buffer): Map<string, string> {
  const out = onPath(p, (a) =>
    execFileSync('getfattr', ['--absolute-names', '-h', '-d', '-m', '-', '-e', 'hex', a], { encoding: 'latin1' }),
  );
  const m = new Map<string, string>();
  for (const line of out.split('\n')) {
    const i = line.indexOf('=');
    if (line.startsWith('#') || i < 0) continue;
    m.set(line.slice(0, i), line.slice(i + 1).replace(/^0x/, '').replace(/^""$/, ''));
  }
  return m;
}

const TYPE: Record<string, number> = {
  directory: 0o040000,
  file: 0o100000,
  symlink: 0o120000,
  chardev: 0o020000,
  blockdev: 0o060000,
  fifo: 0o010000,
  socket: 0o140000,
};

function compareTree(root: string, which: 'v1' | 'v2'): void {
  const listing = loadListing(which);
  const byHex = new Map(listing.map((e) => [e.path_hex, e]));
  const expectedCount = listing.length;
  let seen = 0;
  for (const exp of listing) {
    const p = hostPath(root, exp);
    const st = lstatSync(p, { bigint: true });
    seen++;
    const meta = exp.kind === 'hardlink' ? byHex.get(Buffer.from('/' + exp.hardlink_target!.replace(/\0$/, '')).toString('hex'))! : exp;
    const where = exp.path;
    expect(Number(st.mode) & 0o170000, where).toBe(TYPE[meta.kind]);
    expect(Number(st.mode), where).toBe(meta.mode_dec);
    if (isRoot) expect([Number(st.uid), Number(st.gid)], where).toEqual([meta.uid, meta.gid]);
    expect(st.mtimeNs, where).toBe(BigInt(meta.mtime!.secs) * 1_000_000_000n + BigInt(meta.mtime!.nanos));
    if (meta.kind === 'file') {
      const data = readFileSync(p);
      expect(createHash('sha256').update(data).digest('hex'), where).toBe(meta.sha256);
    }
    if (exp.kind === 'hardlink') {
      const t = lstatSync(hostPath(root, meta), { bigint: true });
      expect(st.ino, `${where} shares the inode of its target`).toBe(t.ino);
      expect(Number(st.nlink)).toBeGreaterThanOrEqual(2);
    }
    if (exp.kind === 'symlink') {
      expect(readlinkSync(p, { encoding: 'buffer' }).toString(), where).toBe(exp.symlink_target!.replace(/\0$/, ''));
    }
    if (exp.kind === 'chardev' || exp.kind === 'blockdev') {
      const maj = exp.device_major!;
      const min = exp.device_minor!;
      expect(Number(st.rdev), where).toBe(((maj & 0xfff) << 8) | (min & 0xff) | ((min & ~0xff) << 12));
    }
    if (meta.kind !== 'symlink') {
      const x = xattrsOf(p);
      for (const want of meta.xattrs ?? []) expect(x.get(want.name), `${where} ${want.name}`).toBe(want.value_hex);
      if (meta.fcaps_hex !== undefined) expect(x.get('security.capability'), where).toBe(meta.fcaps_hex);
      else expect(x.has('security.capability'), where).toBe(false);
      const acl = meta.acl;
      const text = onPath(p, (a) => execFileSync('getfacl', ['-n', '-p', '-c', a], { encoding: 'utf8' }));
      for (const u of acl?.users ?? []) expect(text, where).toMatch(new RegExp(`^user:${u.uid}:${perm(u.permissions)}`, 'm'));
      for (const g of acl?.groups ?? []) expect(text, where).toMatch(new RegExp(`^group:${g.gid}:${perm(g.permissions)}`, 'm'));
      if (acl?.group_obj) expect(text, where).toMatch(new RegExp(`^group::${perm(acl.group_obj.permissions)}`, 'm'));
      for (const u of acl?.default_users ?? []) expect(text, where).toMatch(new RegExp(`^default:user:${u.uid}:${perm(u.permissions)}`, 'm'));
      for (const g of acl?.default_groups ?? []) expect(text, where).toMatch(new RegExp(`^default:group:${g.gid}:${perm(g.permissions)}`, 'm'));
      if (acl?.default) expect(text, where).toMatch(new RegExp(`^default:other::${perm(acl.default.other_permissions)}`, 'm'));
      if (!acl) expect(text.includes('user:') && /^user:\d/m.test(text), where).toBe(false);
    }
  }
  expect(seen).toBe(expectedCount);
  // Nothing more than the listing (and no staging directory left behind).
  const count = (d: Buffer): number =>
    readdirSync(d, { encoding: 'buffer', withFileTypes: true }).reduce(
      (n, de) => n + 1 + (de.isDirectory() ? count(Buffer.concat([d, Buffer.from('/'), de.name])) : 0),
      0,
    );
  expect(count(Buffer.from(root)) + 1).toBe(expectedCount);
}

function perm(p: number): string {
  return `${p & 4 ? 'r' : '-'}${p & 2 ? 'w' : '-'}${p & 1 ? 'x' : '-'}`;
}

describe('restore', () => {
  for (const which of ['v1', 'v2'] as const) {
    it(`restores archive-${which} completely and exactly`, async () => {
      const t = await tempDir();
      const target = join(t, 'out');
      const { archive, payload, close } = await open(which);
      const progress: number[] = [];
      const s = await restorePxar(archive, payload, target, { onProgress: (p) => progress.push(p.position) });
      await close();
      expect(s.timeMethod).not.toBe('node');
      expect(s.warnings).toEqual([]);
      const listing = loadListing(which);
      expect(s.files).toBe(listing.filter((e) => e.kind === 'file').length);
      expect(s.hardlinks).toBe(listing.filter((e) => e.kind === 'hardlink').length);
      expect(s.bytes).toBe(listing.filter((e) => e.kind === 'file').reduce((a, e) => a + e.size!, 0));
      expect(progress.length).toBeGreaterThan(10);
      expect(progress[progress.length - 1]).toBeGreaterThan(0);
      if (!isRoot) return; // owners and devices need root; the suite runs as root.
      compareTree(target, which);
    });
  }

  it('restores one subtree; a hardlink whose target lies outside it becomes a copy', async () => {
    const t = await tempDir();
    const { archive, payload, close } = await open('v2');
    const s = await restorePxar(archive, payload, t, { path: '/hardlinks/sub' });
    await close();
    expect(readdirSync(t)).toEqual(['sub']);
    const listing = loadListing('v2');
    const link1 = listing.find((e) => e.path === '/hardlinks/link1')!;
    const data = readFileSync(join(t, 'sub', 'link2'));
    expect(createHash('sha256').update(data).digest('hex')).toBe(link1.sha256);
    const sub = listing.find((e) => e.path === '/hardlinks/sub')!;
    const st = lstatSync(join(t, 'sub'), { bigint: true });
    expect(st.mtimeNs).toBe(BigInt(sub.mtime!.secs) * 1_000_000_000n + BigInt(sub.mtime!.nanos));
    expect(s.files).toBe(1);
  });

  it('restores a single file with a pre-1970 nanosecond mtime', async () => {
    const t = await tempDir();
    const { archive, payload, close } = await open('v1');
    await restorePxar(archive, payload, t, { path: 'hello.txt' });
    await close();
    const exp = loadListing('v1').find((e) => e.path === '/hello.txt')!;
    const st = lstatSync(join(t, 'hello.txt'), { bigint: true });
    expect(st.mtimeNs).toBe(BigInt(exp.mtime!.secs) * 1_000_000_000n + BigInt(exp.mtime!.nanos));
    expect(readFileSync(join(t, 'hello.txt')).toString('hex')).toBe(exp.content_hex);
  });

  it('never replaces existing files', async () => {
    const t = await tempDir();
    const { archive, payload, close } = await open('v1');
    await restorePxar(archive, payload, t, { path: '/hello.txt' });
    await expect(restorePxar(archive, payload, t, { path: '/hello.txt' })).rejects.toBeInstanceOf(IoError);
    await close();
  });

  it('never writes through a symlink the archive planted (duplicate names)', async () => {
    const t = await tempDir();
    const outside = await tempDir();
    const bytes = buildV1({
      kind: 'dir',
      name: '',
      children: [
        { kind: 'symlink', name: 'a', target: outside },
        { kind: 'dir', name: 'a', children: [{ kind: 'file', name: 'x', data: 'pwned' }] },
        { kind: 'file', name: 'a', data: 'pwned' },
      ],
    });
    const target = join(t, 'out');
    const err = await restorePxar(new BufferReadAt('evil.pxar', bytes), undefined, target).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IoError);
    expect(readdirSync(outside)).toEqual([]);
    expect(lstatSync(join(target, 'a')).isSymbolicLink()).toBe(true);
    expect(existsSync(join(outside, 'x'))).toBe(false);
  });
});
