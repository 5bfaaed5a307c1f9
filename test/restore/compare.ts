/** Comparison of a restored directory tree with the upstream listing (used by restore and CLI tests). */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { linkSync, lstatSync, readFileSync, readdirSync, readlinkSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { loadListing, type ListingEntry } from '../pxar/listing.js';

export const isRoot = process.getuid?.() === 0;

/** Host path (raw bytes) of a listing path under `root`. */
function hostPath(root: string, e: ListingEntry): Buffer {
  return Buffer.concat([Buffer.from(root), Buffer.from(e.path_hex === '2f' ? '' : e.path_hex, 'hex')]);
}

/**
 * Runs a tool on a path; argv is UTF-8, so a file whose name is not gets probed through a
 * temporary hardlink with an ASCII name (xattrs and ACLs belong to the inode).
 */
function onPath(p: Buffer, scratch: string, run: (ascii: string) => string): string {
  if (Buffer.from(p.toString('utf8')).equals(p)) return run(p.toString('utf8'));
  const probe = join(scratch, `probe-${process.pid}`);
  linkSync(p, probe);
  try {
    return run(probe);
  } finally {
    unlinkSync(probe);
  }
}

/** getfattr -d of one path: name -> hex value. */
function xattrsOf(p: Buffer, scratch: string): Map<string, string> {
  const out = onPath(p, scratch, (a) =>
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

/**
 * Compares a restored tree with the listing: kinds, modes, owners (as root), mtimes to the
 * nanosecond, contents, symlink targets, hardlink inode identity, device numbers, xattrs, fcaps
 * and ACLs (through getfattr/getfacl), and that nothing else was created. `scratch` is a
 * directory on the same filesystem for probe links.
 */
export function compareTree(root: string, which: 'v1' | 'v2', scratch: string): void {
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
    if (meta.kind === 'file' || meta.kind === 'directory') {
      const attrs = onPath(p, scratch, (a) => execFileSync('lsattr', ['-d', a], { encoding: 'utf8' })).split(' ')[0]!;
      expect(attrs.includes('A'), `${where} noatime flag`).toBe((meta.flags! & 0x20000) !== 0);
    }
    if (meta.kind !== 'symlink') {
      const x = xattrsOf(p, scratch);
      for (const want of meta.xattrs ?? []) expect(x.get(want.name), `${where} ${want.name}`).toBe(want.value_hex);
      if (meta.fcaps_hex !== undefined) expect(x.get('security.capability'), where).toBe(meta.fcaps_hex);
      else expect(x.has('security.capability'), where).toBe(false);
      const acl = meta.acl;
      const text = onPath(p, scratch, (a) => execFileSync('getfacl', ['-n', '-p', '-c', a], { encoding: 'utf8' }));
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

