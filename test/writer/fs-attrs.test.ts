/**
 * xattrs, POSIX ACLs and fcaps from a real filesystem, as the PBS client records them: the same
 * attributes the vector fixture's attrs/ directory has, set with setfacl/setfattr, must come out
 * of our encoder + decoder exactly as the upstream listing shows them.
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { withDir } from 'tmp-promise';
import { aclFromXattrs, haveGetfattr, havePython, parseGetfattr, parsePythonAttrs, pxarFlagsFromChattr, readTreeAttrs } from '../../src/writer/fs-attrs.js';
import { PxarEncoder, type ByteSink } from '../../src/writer/pxar-encoder.js';
import { TreeWalker } from '../../src/writer/fs-walk.js';
import { BufferReadAt } from '../../src/io/read-at.js';
import { PxarSequentialDecoder } from '../../src/pxar/sequential.js';
import { pxarDir } from '../helpers/paths.js';

const tools = haveGetfattr() && spawnSync('setfacl', ['--version']).status === 0 && spawnSync('setfattr', ['--version']).status === 0;
const isRoot = process.getuid?.() === 0;

function run(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
}

class MemSink implements ByteSink {
  parts: Buffer[] = [];
  write(d: Uint8Array): void {
    this.parts.push(Buffer.from(d));
  }
}

describe('filesystem attributes', () => {
  it('parses getfattr output: escaped names, empty values, ACL and capability attributes', () => {
    const text = [
      '# file: .',
      'user.root=0x01',
      '',
      '# file: ./a\\012b\\134c',
      'security.capability=0x0100000200200000000000000000000000000000',
      'system.posix_acl_access=0x0200000001000600ffffffff02000600e803000004000400ffffffff10000600ffffffff20000400ffffffff',
      'user.empty=0x',
      'user.noeq',
      '',
    ].join('\n');
    const m = parseGetfattr(text);
    expect([...m.keys()]).toEqual(['', 'a\nb\\c']);
    const a = m.get('a\nb\\c')!;
    expect(Buffer.from(a.fcaps!).toString('hex')).toBe('0100000200200000000000000000000000000000');
    expect(a.xattrs.map((x) => [Buffer.from(x.name).toString(), Buffer.from(x.value).toString('hex')])).toEqual([
      ['user.empty', ''],
      ['user.noeq', ''],
    ]);
    expect(a.acl).toEqual({ users: [{ uid: 1000, permissions: 6 }], groupObj: 4 });
  });

  it('parses the python helper output and maps chattr flags like upstream', () => {
    const rel = Buffer.from('d/f').toString('hex');
    const m = parsePythonAttrs(
      [
        `X ${rel} ${Buffer.from('user.b').toString('hex')} 01`,
        `X ${rel} ${Buffer.from('user.a').toString('hex')} `,
        `X ${rel} ${Buffer.from('system.posix_acl_default').toString('hex')} 0200000001000700ffffffff04000500ffffffff20000000ffffffff`,
        `F ${rel} ${0x80 | 0x10 | 0x80000} 42`,
        'F  524288 0',
        '',
      ].join('\n'),
    );
    const a = m.get('d/f')!;
    expect(a.xattrs.map((x) => Buffer.from(x.name).toString())).toEqual(['user.b', 'user.a']); // listxattr order kept
    expect(a.flags).toBe(0x20000 | 0x400000); // NOATIME | IMMUTABLE; the extents flag is not mapped
    expect(a.projectId).toBe(42);
    expect(a.acl?.default).toEqual({ userObj: 7n, groupObj: 5n, other: 0n, mask: 0xffffffffffffffffn });
    expect(m.get('')!.flags).toBe(0);
    expect(pxarFlagsFromChattr(0x20 | 0x40 | 0x10000 | 0x8 | 0x400 | 0x4 | 0x800000 | 0x20000000)).toBe(
      0x10000 | 0x100000 | 0x200000 | 0x800000 | 0x1000000 | 0x40000 | 0x80000 | 0x2000000,
    );
  });

  it('python and getfattr helpers agree on a real tree (up to xattr order)', async () => {
    if (!tools || !havePython()) {
      expect(tools && havePython()).toBe(false);
      return;
    }
    await withDir(
      async ({ path: tmp }) => {
        mkdirSync(join(tmp, 'd'));
        writeFileSync(join(tmp, 'd', 'f'), 'x');
        run('setfattr', ['-n', 'user.z', '-v', '1', join(tmp, 'd', 'f')]);
        run('setfattr', ['-n', 'user.a', '-v', '0x00', join(tmp, 'd', 'f')]);
        run('setfacl', ['-m', 'u:4242:r', join(tmp, 'd')]);
        const norm = (m: Map<string, { xattrs: { name: Uint8Array; value: Uint8Array }[]; acl: unknown }> | undefined) =>
          [...(m ?? new Map()).entries()]
            .filter(([, v]) => v.xattrs.length > 0 || v.acl !== undefined)
            .map(([k, v]) => [k, v.xattrs.map((x: { name: Uint8Array; value: Uint8Array }) => Buffer.from(x.name).toString() + '=' + Buffer.from(x.value).toString('hex')).sort(), v.acl])
            .sort();
        const py = readTreeAttrs(tmp, undefined, 'python');
        const gf = readTreeAttrs(tmp, undefined, 'getfattr');
        expect(norm(py)).toEqual(norm(gf));
        expect(norm(py)).toHaveLength(2);
      },
      { unsafeCleanup: true },
    );
  });

  it('turns a default ACL without a mask into NO_MASK fields and ignores malformed ACL values', () => {
    // version 2; USER_OBJ rwx, GROUP_OBJ r-x, OTHER ---
    const v = Buffer.from('02000000' + '01000700ffffffff' + '04000500ffffffff' + '20000000ffffffff', 'hex');
    expect(aclFromXattrs(undefined, v)).toEqual({ default: { userObj: 7n, groupObj: 5n, other: 0n, mask: 0xffffffffffffffffn } });
    expect(aclFromXattrs(Buffer.from('0100000001', 'hex'), undefined)).toBeUndefined();
  });

  it('records the vector fixture attributes like upstream (ACLs, xattrs, fcaps)', async () => {
    if (!tools || !isRoot) {
      // needs setfacl/setfattr and root (trusted.* and security.capability)
      expect(tools && isRoot).toBe(false);
      return;
    }
    interface Acl {
      users: { uid: number; permissions: number }[];
      groups: { gid: number; permissions: number }[];
      default_users: { uid: number; permissions: number }[];
      default_groups: { gid: number; permissions: number }[];
      group_obj: { permissions: number } | null;
      default: { user_obj_permissions: number; group_obj_permissions: number; other_permissions: number; mask_permissions: number } | null;
    }
    interface L { kind: string; path: string; path_hex: string; mode_dec: number; content_hex?: string; acl?: Acl; xattrs?: { name: string; value_hex: string }[]; fcaps_hex?: string }
    const listing = JSON.parse(readFileSync(join(pxarDir, 'archive-v1.listing.json'), 'utf8')) as L[];
    // every file or directory that carries attributes in the fixture
    const targets = listing.filter((e) => e.path !== '/' && (e.kind === 'file' || e.kind === 'directory') && (e.acl || e.xattrs || e.fcaps_hex));
    expect(targets.length).toBeGreaterThan(0);
    const rwx = (p: number) => (p & 4 ? 'r' : '-') + (p & 2 ? 'w' : '-') + (p & 1 ? 'x' : '-');
    const NO_MASK = 2 ** 63; // anything this large is the NO_MASK placeholder
    await withDir(
      async ({ path: tmp }) => {
        const root = join(tmp, 'tree');
        mkdirSync(root);
        for (const e of targets) {
          const p = join(root, Buffer.from(e.path_hex, 'hex').toString('utf8'));
          mkdirSync(join(p, '..'), { recursive: true });
          if (e.kind === 'directory') mkdirSync(p, { recursive: true });
          else writeFileSync(p, Buffer.from(e.content_hex ?? '', 'hex'));
          chmodSync(p, e.mode_dec & 0o7777);
          const a = e.acl;
          if (a) {
            const access = [...a.users.map((u) => `u:${u.uid}:${rwx(u.permissions)}`), ...a.groups.map((g) => `g:${g.gid}:${rwx(g.permissions)}`)];
            if (a.group_obj) access.push(`g::${rwx(a.group_obj.permissions)}`, `m::${rwx((e.mode_dec >> 3) & 7)}`);
            if (access.length) run('setfacl', ['-m', access.join(','), p]);
            if (a.default) {
              const d = a.default;
              const dflt = [`u::${rwx(d.user_obj_permissions)}`, `g::${rwx(d.group_obj_permissions)}`, `o::${rwx(d.other_permissions)}`];
              if (d.mask_permissions < NO_MASK) dflt.push(`m::${rwx(d.mask_permissions)}`);
              dflt.push(...a.default_users.map((u) => `u:${u.uid}:${rwx(u.permissions)}`), ...a.default_groups.map((g) => `g:${g.gid}:${rwx(g.permissions)}`));
              run('setfacl', ['-d', '-m', dflt.join(','), p]);
            }
          }
          for (const x of e.xattrs ?? []) run('setfattr', x.value_hex === '' ? ['-n', x.name, p] : ['-n', x.name, '-v', '0x' + x.value_hex, p]);
          if (e.fcaps_hex) run('setfattr', ['-n', 'security.capability', '-v', '0x' + e.fcaps_hex, p]);
        }

        const walker = new TreeWalker(root);
        const out = new MemSink();
        walker.run(new PxarEncoder(out, walker.rootMeta()));
        const dec = await PxarSequentialDecoder.open(new BufferReadAt('attrs.pxar', Buffer.concat(out.parts)));
        const got = new Map<string, { mode: number; acl: unknown; xattrs: string[] | undefined; fcaps: string | undefined }>();
        for await (const e of dec.entries()) {
          const m = e.metadata!;
          const acl = m.acl;
          const none = acl.users.length + acl.groups.length + acl.defaultUsers.length + acl.defaultGroups.length === 0 && acl.groupObj === undefined && acl.default === undefined;
          got.set(e.path.toString('hex'), {
            mode: m.stat.mode,
            acl: none
              ? undefined
              : {
                  users: acl.users.map((u) => ({ uid: u.id, permissions: u.permissions })),
                  groups: acl.groups.map((g) => ({ gid: g.id, permissions: g.permissions })),
                  default_users: acl.defaultUsers.map((u) => ({ uid: u.id, permissions: u.permissions })),
                  default_groups: acl.defaultGroups.map((g) => ({ gid: g.id, permissions: g.permissions })),
                  group_obj: acl.groupObj === undefined ? null : { permissions: acl.groupObj },
                  default: acl.default === undefined ? null : {
                    user_obj_permissions: acl.default.userObj >= NO_MASK ? 18446744073709551615 : acl.default.userObj,
                    group_obj_permissions: acl.default.groupObj >= NO_MASK ? 18446744073709551615 : acl.default.groupObj,
                    other_permissions: acl.default.other >= NO_MASK ? 18446744073709551615 : acl.default.other,
                    mask_permissions: acl.default.mask >= NO_MASK ? 18446744073709551615 : acl.default.mask,
                  },
                },
            xattrs: m.xattrs.length ? m.xattrs.map((x) => `${x.name.toString()}=${x.value.toString('hex')}`).sort() : undefined,
            fcaps: m.fcaps?.toString('hex'),
          });
        }
        for (const e of targets) {
          const g = got.get(e.path_hex)!;
          expect(g, e.path).toBeDefined();
          expect(g.mode, e.path).toBe(e.mode_dec);
          expect(g.acl, e.path).toEqual(e.acl);
          expect(g.fcaps, e.path).toBe(e.fcaps_hex);
          // getfattr lists names sorted; upstream keeps listxattr order: compare as sets
          expect(g.xattrs, e.path).toEqual(e.xattrs?.map((x) => `${x.name}=${x.value_hex}`).sort());
        }
      },
      { unsafeCleanup: true },
    );
  });
});
