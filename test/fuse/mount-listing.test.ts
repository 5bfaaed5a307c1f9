/**
 * Every vector snapshot's file archive, mounted through the CLI and read through the kernel,
 * equals the upstream decoder's listing: names (raw bytes), kinds, modes, owners, sizes,
 * nanosecond mtimes, content SHA-256, symlink targets, hardlink inode identity and nlink, device
 * numbers, xattrs (getfattr) and ACLs (getfacl).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { datastoreDir, keysDir, pxarDir, vectorsDir } from '../helpers/paths.js';
import { MountTracker, runCli } from '../helpers/mount-cli.js';

interface ListingEntry {
  kind: string;
  path_hex: string;
  mode_dec?: number;
  uid?: number;
  gid?: number;
  size?: number;
  mtime?: { secs: number; nanos: number };
  sha256?: string;
  symlink_target?: string;
  hardlink_target?: string;
  device_major?: number;
  device_minor?: number;
  xattrs?: { name: string; value_hex: string }[];
  fcaps_hex?: string;
  acl?: {
    users: { uid: number; permissions: number }[];
    groups: { gid: number; permissions: number }[];
    group_obj: { permissions: number } | null;
    default_users: { uid: number; permissions: number }[];
    default_groups: { gid: number; permissions: number }[];
    default: { user_obj_permissions: number; group_obj_permissions: number; other_permissions: number; mask_permissions: number } | null;
  };
}

interface SnapshotVector {
  path: string;
  namespace?: string;
  files: Record<string, unknown>;
}

const expected = JSON.parse(readFileSync(join(vectorsDir, 'datastore', 'expected.json'), 'utf8')) as { snapshots: SnapshotVector[] };
const hostSnapshots = expected.snapshots.filter((s) => Object.keys(s.files).some((f) => /\.(pxar|mpxar)\.didx$/.test(f)));
const listingFor = (s: SnapshotVector): ListingEntry[] =>
  JSON.parse(
    readFileSync(join(pxarDir, Object.keys(s.files).some((f) => f.endsWith('.mpxar.didx')) ? 'archive-v2.listing.json' : 'archive-v1.listing.json'), 'utf8'),
  ) as ListingEntry[];

const keyfile = join(keysDir, 'key-scrypt.json');
const tracker = new MountTracker();

function perm(p: number): string {
  return `${p & 4 ? 'r' : '-'}${p & 2 ? 'w' : '-'}${p & 1 ? 'x' : '-'}`;
}

function unescapeOctal(s: string): Buffer {
  const bytes: number[] = [];
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '\\' && /^[0-7]{3}$/.test(s.slice(i + 1, i + 4))) {
      bytes.push(parseInt(s.slice(i + 1, i + 4), 8));
      i += 3;
    } else bytes.push(...Buffer.from(s[i]!));
  }
  return Buffer.from(bytes);
}

/** getfattr -R output: path (hex) -> name -> value hex. */
function xattrsUnder(root: string): Map<string, Map<string, string>> {
  const out = execFileSync('getfattr', ['-R', '-P', '-h', '-d', '-m', '-', '-e', 'hex', '--absolute-names', root], { encoding: 'utf8' });
  const map = new Map<string, Map<string, string>>();
  let cur: Map<string, string> | undefined;
  for (const line of out.split('\n')) {
    if (line.startsWith('# file: ')) {
      const p = unescapeOctal(line.slice(8));
      const rel = p.subarray(Buffer.byteLength(root));
      cur = new Map();
      map.set((rel.length ? rel : Buffer.from('/')).toString('hex'), cur);
    } else if (cur && line.includes('=')) {
      const i = line.indexOf('=');
      cur.set(line.slice(0, i), line.slice(i + 1).replace(/^0x/, ''));
    } else if (cur && line.trim() !== '') {
      cur.set(line.trim(), ''); // an empty value prints as the bare name
    }
  }
  return map;
}

/** Walks the mounted tree: relative path (hex, with leading "/") of every entry. */
function walk(root: string): string[] {
  const out: string[] = ['2f'];
  const rec = (abs: Buffer, rel: Buffer): void => {
    for (const name of readdirSync(abs, { encoding: 'buffer' })) {
      const childRel = Buffer.concat([rel, Buffer.from('/'), name]);
      const childAbs = Buffer.concat([abs, Buffer.from('/'), name]);
      out.push(childRel.toString('hex'));
      if (lstatSync(childAbs).isDirectory()) rec(childAbs, childRel);
    }
  };
  rec(Buffer.from(root), Buffer.alloc(0));
  return out.sort();
}

/**
 * `syntheticRoot`: in snapshot and datastore mounts an archive's directory shows made-up
 * attributes (0555, root, backup time) so that listing a snapshot never opens its archives.
 */
function compareTree(root: string, listing: ListingEntry[], syntheticRoot = false): void {
  const entries = listing.filter((e) => e.kind !== 'version');
  expect(walk(root)).toEqual(entries.map((e) => e.path_hex).sort());
  const abs = (hex: string): Buffer => {
    const rel = Buffer.from(hex, 'hex');
    return Buffer.concat([Buffer.from(root), rel.length === 1 ? Buffer.alloc(0) : rel]);
  };
  const byPath = new Map(entries.map((e) => [Buffer.from(e.path_hex, 'hex').toString('latin1'), e]));
  const inoOf = new Map<string, bigint>();
  const linkCount = new Map<string, number>();
  for (const e of entries) {
    if (e.kind === 'hardlink') {
      const t = '/' + e.hardlink_target!.replace(/\0$/, '');
      linkCount.set(t, (linkCount.get(t) ?? 0) + 1);
    }
  }
  const xattrs = xattrsUnder(root);
  for (const e of entries) {
    const p = abs(e.path_hex);
    const where = Buffer.from(e.path_hex, 'hex').toString();
    const st = lstatSync(p, { bigint: true });
    if (e.kind === 'hardlink') {
      const target = byPath.get(Buffer.from('/' + e.hardlink_target!.replace(/\0$/, '')).toString('latin1'))!;
      const tst = lstatSync(abs(target.path_hex), { bigint: true });
      expect(st.ino, `${where} shares its target's inode`).toBe(tst.ino);
      expect(st.nlink).toBe(tst.nlink);
      inoOf.set(e.path_hex, st.ino);
      continue;
    }
    if (syntheticRoot && e.path_hex === '2f') {
      expect(Number(st.mode)).toBe(0o40555);
      continue;
    }
    expect(Number(st.mode), `${where} mode`).toBe(e.mode_dec);
    expect(Number(st.uid), `${where} uid`).toBe(e.uid);
    expect(Number(st.gid), `${where} gid`).toBe(e.gid);
    expect(st.mtimeNs, `${where} mtime`).toBe(BigInt(e.mtime!.secs) * 1_000_000_000n + BigInt(e.mtime!.nanos));
    if (e.kind === 'file') {
      expect(Number(st.size), `${where} size`).toBe(e.size);
      expect(createHash('sha256').update(readFileSync(p)).digest('hex'), `${where} content`).toBe(e.sha256);
      const rel = Buffer.from(e.path_hex, 'hex').toString('latin1');
      expect(Number(st.nlink), `${where} nlink`).toBe(1 + (linkCount.get(rel) ?? 0));
      expect(Number(st.blocks)).toBe(Math.ceil(e.size! / 512));
    }
    if (e.kind === 'symlink') {
      expect(readlinkSync(p, { encoding: 'buffer' }).toString(), `${where} target`).toBe(e.symlink_target!.replace(/\0$/, ''));
    }
    if (e.kind === 'chardev' || e.kind === 'blockdev') {
      const rdev = st.rdev;
      const major = Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
      const minor = Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
      expect([major, minor], `${where} device`).toEqual([e.device_major, e.device_minor]);
    }
    // xattrs: stored ones and fcaps byte for byte; ACLs show up as system.posix_acl_* names.
    const got = xattrs.get(e.path_hex) ?? new Map<string, string>();
    const want = new Map<string, string>((e.xattrs ?? []).map((x) => [x.name, x.value_hex]));
    if (e.fcaps_hex) want.set('security.capability', e.fcaps_hex);
    const gotPlain = new Map([...got].filter(([n]) => !n.startsWith('system.posix_acl_')));
    expect(gotPlain, `${where} xattrs`).toEqual(want);
    const aclNames = [...got.keys()].filter((n) => n.startsWith('system.posix_acl_')).sort();
    const wantAcl: string[] = [];
    if (e.acl && (e.acl.users.length || e.acl.groups.length || e.acl.group_obj)) wantAcl.push('system.posix_acl_access');
    if (e.acl?.default) wantAcl.push('system.posix_acl_default');
    expect(aclNames, `${where} ACL xattrs`).toEqual(wantAcl);
    if (e.acl) {
      const text = execFileSync('getfacl', ['-n', '-p', '-E', '--omit-header', p.toString()], { encoding: 'utf8' });
      const lines = new Set(text.split('\n').map((l) => l.trim()));
      const wantLines = [
        ...e.acl.users.map((u) => `user:${u.uid}:${perm(u.permissions)}`),
        ...e.acl.groups.map((g) => `group:${g.gid}:${perm(g.permissions)}`),
        ...(e.acl.group_obj ? [`group::${perm(e.acl.group_obj.permissions)}`, `mask::${perm((e.mode_dec! >> 3) & 7)}`] : []),
        ...(e.acl.default
          ? [
              `default:user::${perm(e.acl.default.user_obj_permissions)}`,
              `default:group::${perm(e.acl.default.group_obj_permissions)}`,
              `default:other::${perm(e.acl.default.other_permissions)}`,
              `default:mask::${perm(e.acl.default.mask_permissions)}`,
              ...e.acl.default_users.map((u) => `default:user:${u.uid}:${perm(u.permissions)}`),
              ...e.acl.default_groups.map((g) => `default:group:${g.gid}:${perm(g.permissions)}`),
            ]
          : []),
      ];
      for (const l of wantLines) expect(lines.has(l), `${where} getfacl has ${l}:\n${text}`).toBe(true);
    }
  }
}

describe('mounted vector snapshots equal the upstream listings', () => {
  let mp = '';
  beforeAll(async () => {
    mp = tracker.mountpoint();
    const r = await runCli(['--repository', datastoreDir, '--keyfile', keyfile, 'mount', mp]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  });
  afterAll(() => tracker.cleanup());

  it('has every snapshot of every namespace in the datastore tree', () => {
    for (const s of expected.snapshots) expect(lstatSync(join(mp, s.path)).isDirectory(), s.path).toBe(true);
  });

  for (const s of hostSnapshots) {
    it(`${s.path}: root.pxar through the kernel`, () => {
      compareTree(join(mp, s.path, 'root.pxar'), listingFor(s), true);
    });
  }

  it('mounts a single archive on its own (stable archive inode numbers), encrypted, 64 KiB chunks', async () => {
    const s = hostSnapshots.find((x) => x.path === 'host/testhost/2024-06-04T11:00:00Z') ?? hostSnapshots[0]!;
    const one = tracker.mountpoint();
    const args = ['--repository', datastoreDir, '--keyfile', keyfile];
    if (s.namespace) args.push('--ns', s.namespace);
    const r = await runCli([...args, 'mount', s.path.replace(/^ns\/[^/]+\//, ''), 'root.pxar', one]);
    expect(r.code, r.stderr).toBe(0);
    compareTree(one, listingFor(s));
    // Inode numbers are the archive's own (root 1, others FILENAME offset + 2): stable across mounts.
    expect(Number(lstatSync(one).ino)).toBe(1);
  });
});
