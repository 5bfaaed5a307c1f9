/**
 * Renders pxar ACL items and fcaps as the Linux extended attributes they came from:
 * `system.posix_acl_access`, `system.posix_acl_default` (the kernel's posix_acl_xattr format:
 * u32 version 2, then {u16 tag, u16 perm, u32 id} entries sorted by tag then id) and
 * `security.capability` (stored verbatim in FCAPS).
 *
 * Rules (spec §6 "ACL items", and how PBS restores them):
 * - access ACL: owner and other permissions come from the stat mode. With ACL_GROUP_OBJ present
 *   the stat group bits are the mask and ACL_GROUP_OBJ holds the owning group's permissions.
 *   Without it, the group bits are the owning group's; if named users/groups exist anyway, the
 *   mask is set to the same value (PBS does this too, with a warning).
 * - default ACL: ACL_DEFAULT gives owner/group/other/mask; a mask of NO_MASK means "no mask".
 */
import { ACL_NO_MASK } from './format.js';
import type { PxarAclEntry, PxarMetadata, PxarXattr } from './types.js';

export const XATTR_ACL_ACCESS = 'system.posix_acl_access';
export const XATTR_ACL_DEFAULT = 'system.posix_acl_default';
export const XATTR_CAPABILITY = 'security.capability';

const TAG_USER_OBJ = 0x01;
const TAG_USER = 0x02;
const TAG_GROUP_OBJ = 0x04;
const TAG_GROUP = 0x08;
const TAG_MASK = 0x10;
const TAG_OTHER = 0x20;
const UNDEFINED_ID = 0xffffffff;
const NO_MASK = Number(ACL_NO_MASK);

interface AclXattrEntry {
  tag: number;
  perm: number;
  id: number;
}

function encode(entries: AclXattrEntry[]): Buffer {
  entries.sort((a, b) => a.tag - b.tag || a.id - b.id);
  const b = Buffer.alloc(4 + 8 * entries.length);
  b.writeUInt32LE(2, 0);
  entries.forEach((e, i) => {
    b.writeUInt16LE(e.tag, 4 + i * 8);
    b.writeUInt16LE(e.perm & 7, 6 + i * 8);
    b.writeUInt32LE(e.id, 8 + i * 8);
  });
  return b;
}

/** Permissions value as 3 bits (NO_MASK and other out-of-range values become 0). */
function perm(p: number): number {
  return p >= 0 && p <= 7 ? p : 0;
}

function named(list: PxarAclEntry[], tag: number): AclXattrEntry[] {
  return list.map((e) => ({ tag, perm: perm(e.permissions), id: e.id >>> 0 }));
}

/** `system.posix_acl_access` value, or undefined when the entry has no access ACL. */
export function accessAclXattr(md: PxarMetadata): Buffer | undefined {
  const { acl } = md;
  if (acl.users.length === 0 && acl.groups.length === 0 && acl.groupObj === undefined) return undefined;
  const mode = md.stat.mode;
  const groupBits = (mode >> 3) & 7;
  const entries: AclXattrEntry[] = [
    { tag: TAG_USER_OBJ, perm: (mode >> 6) & 7, id: UNDEFINED_ID },
    { tag: TAG_OTHER, perm: mode & 7, id: UNDEFINED_ID },
    ...named(acl.users, TAG_USER),
    ...named(acl.groups, TAG_GROUP),
  ];
  if (acl.groupObj !== undefined) {
    entries.push({ tag: TAG_GROUP_OBJ, perm: perm(acl.groupObj), id: UNDEFINED_ID });
    entries.push({ tag: TAG_MASK, perm: groupBits, id: UNDEFINED_ID });
  } else {
    entries.push({ tag: TAG_GROUP_OBJ, perm: groupBits, id: UNDEFINED_ID });
    if (acl.users.length > 0 || acl.groups.length > 0) entries.push({ tag: TAG_MASK, perm: groupBits, id: UNDEFINED_ID });
  }
  return encode(entries);
}

/** `system.posix_acl_default` value, or undefined when the entry has no default ACL. */
export function defaultAclXattr(md: PxarMetadata): Buffer | undefined {
  const { acl } = md;
  if (acl.default === undefined && acl.defaultUsers.length === 0 && acl.defaultGroups.length === 0) return undefined;
  const mode = md.stat.mode;
  const d = acl.default ?? { userObj: (mode >> 6) & 7, groupObj: (mode >> 3) & 7, other: mode & 7, mask: NO_MASK };
  const users = named(acl.defaultUsers, TAG_USER);
  const groups = named(acl.defaultGroups, TAG_GROUP);
  const entries: AclXattrEntry[] = [
    { tag: TAG_USER_OBJ, perm: perm(d.userObj), id: UNDEFINED_ID },
    { tag: TAG_GROUP_OBJ, perm: perm(d.groupObj), id: UNDEFINED_ID },
    { tag: TAG_OTHER, perm: perm(d.other), id: UNDEFINED_ID },
    ...users,
    ...groups,
  ];
  if (d.mask !== NO_MASK) {
    entries.push({ tag: TAG_MASK, perm: perm(d.mask), id: UNDEFINED_ID });
  } else if (users.length > 0 || groups.length > 0) {
    // A named entry needs a mask: the union of the group class, as setfacl computes it.
    const union = [...users, ...groups].reduce((m, e) => m | e.perm, perm(d.groupObj));
    entries.push({ tag: TAG_MASK, perm: union, id: UNDEFINED_ID });
  }
  return encode(entries);
}

/**
 * Every extended attribute of an entry as the kernel would list it: the stored xattrs, then the
 * ACLs and the file capabilities rendered back into their xattr form.
 */
export function allXattrs(md: PxarMetadata): PxarXattr[] {
  const out: PxarXattr[] = [...md.xattrs];
  const access = accessAclXattr(md);
  if (access !== undefined) out.push({ name: Buffer.from(XATTR_ACL_ACCESS), value: access });
  const def = defaultAclXattr(md);
  if (def !== undefined) out.push({ name: Buffer.from(XATTR_ACL_DEFAULT), value: def });
  if (md.fcaps !== undefined) out.push({ name: Buffer.from(XATTR_CAPABILITY), value: md.fcaps });
  return out;
}
