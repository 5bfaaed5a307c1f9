import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { dir } from 'tmp-promise';
import { FileReadAt } from '../../src/io/read-at.js';
import { PxarAccessor } from '../../src/pxar/accessor.js';
import { accessAclXattr, allXattrs, defaultAclXattr } from '../../src/pxar/acl.js';
import { pxarDir } from '../helpers/paths.js';
import { loadListing } from './listing.js';

/** Builds the kernel xattr form independently: version 2, entries sorted by tag then id. */
function xattr(entries: [tag: number, perm: number, id?: number][]): string {
  const b = Buffer.alloc(4 + entries.length * 8);
  b.writeUInt32LE(2, 0);
  entries.forEach(([tag, perm, id], i) => {
    b.writeUInt16LE(tag, 4 + i * 8);
    b.writeUInt16LE(perm, 6 + i * 8);
    b.writeUInt32LE(id ?? 0xffffffff, 8 + i * 8);
  });
  return b.toString('hex');
}

describe('ACL and fcaps rendering', () => {
  it('renders every listed ACL as the kernel xattr form', async () => {
    const a = await FileReadAt.open(join(pxarDir, 'archive-v1.pxar'));
    const acc = await PxarAccessor.open(a);
    let checked = 0;
    for (const exp of loadListing('v1')) {
      const e = await acc.lookupPath(Buffer.from(exp.path_hex, 'hex'));
      if (e?.metadata === undefined) continue;
      const md = e.metadata;
      const mode = md.stat.mode;
      const acl = exp.acl;
      const hasAccess = acl !== undefined && (acl.users.length > 0 || acl.groups.length > 0 || acl.group_obj !== null);
      if (!hasAccess) {
        expect(accessAclXattr(md), exp.path).toBeUndefined();
      } else {
        const want: [number, number, number?][] = [[1, (mode >> 6) & 7]];
        for (const u of [...acl.users].sort((x, y) => x.uid - y.uid)) want.push([2, u.permissions, u.uid]);
        want.push([4, acl.group_obj !== null ? acl.group_obj.permissions : (mode >> 3) & 7]);
        for (const g of [...acl.groups].sort((x, y) => x.gid - y.gid)) want.push([8, g.permissions, g.gid]);
        want.push([0x10, (mode >> 3) & 7]);
        want.push([0x20, mode & 7]);
        expect(accessAclXattr(md)!.toString('hex'), exp.path).toBe(xattr(want));
        checked++;
      }
      const d = acl?.default ?? null;
      if (d === null) {
        expect(defaultAclXattr(md), exp.path).toBeUndefined();
      } else {
        const want: [number, number, number?][] = [[1, d.user_obj_permissions]];
        for (const u of [...acl!.default_users].sort((x, y) => x.uid - y.uid)) want.push([2, u.permissions, u.uid]);
        want.push([4, d.group_obj_permissions]);
        for (const g of [...acl!.default_groups].sort((x, y) => x.gid - y.gid)) want.push([8, g.permissions, g.gid]);
        if (d.mask_permissions <= 7) want.push([0x10, d.mask_permissions]);
        want.push([0x20, d.other_permissions]);
        expect(defaultAclXattr(md)!.toString('hex'), exp.path).toBe(xattr(want));
        checked++;
      }
      const names = allXattrs(md).map((x) => x.name.toString());
      expect(names.includes('security.capability'), exp.path).toBe(exp.fcaps_hex !== undefined);
    }
    expect(checked).toBeGreaterThanOrEqual(3);
    await a.close();
  });

  it('the kernel accepts the rendered values (getfacl reads them back)', async () => {
    const a = await FileReadAt.open(join(pxarDir, 'archive-v1.pxar'));
    const acc = await PxarAccessor.open(a);
    const t = await dir({ unsafeCleanup: true });
    try {
      const e = (await acc.lookupPath('/attrs/acl-file'))!;
      const f = join(t.path, 'f');
      writeFileSync(f, '');
      execFileSync('chmod', [(e.metadata!.stat.mode & 0o7777).toString(8), f]);
      const v = accessAclXattr(e.metadata!)!;
      execFileSync('setfattr', ['-n', 'system.posix_acl_access', '-v', `0x${v.toString('hex')}`, f]);
      const text = execFileSync('getfacl', ['-n', '-p', '-c', f], { encoding: 'utf8' });
      const acl = loadListing('v1').find((x) => x.path === '/attrs/acl-file')!.acl!;
      for (const u of acl.users) expect(text).toMatch(new RegExp(`^user:${u.uid}:`, 'm'));
      for (const g of acl.groups) expect(text).toMatch(new RegExp(`^group:${g.gid}:`, 'm'));
      expect(text).toMatch(/^mask::/m);
    } finally {
      await t.cleanup();
      await a.close();
    }
  });
});
