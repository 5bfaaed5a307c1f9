/** Loads the upstream decoder listings and compares our decoded entries with them, field by field. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { expect } from 'vitest';
import { pxarDir } from '../helpers/paths.js';
import type { PxarEntry } from '../../src/pxar/types.js';

export interface ListingEntry {
  kind: string;
  path: string;
  path_hex: string;
  mode_dec?: number;
  flags?: number;
  uid?: number;
  gid?: number;
  mtime?: { secs: number; nanos: number };
  size?: number;
  payload_offset?: number;
  sha256?: string;
  content_hex?: string;
  symlink_target?: string;
  hardlink_target?: string;
  hardlink_offset?: number;
  device_major?: number;
  device_minor?: number;
  xattrs?: { name: string; value_hex: string }[];
  fcaps_hex?: string;
  acl?: {
    users: { uid: number; permissions: number }[];
    groups: { gid: number; permissions: number }[];
    group_obj: { permissions: number } | null;
    default: {
      user_obj_permissions: number;
      group_obj_permissions: number;
      other_permissions: number;
      mask_permissions: number;
    } | null;
    default_users: { uid: number; permissions: number }[];
    default_groups: { gid: number; permissions: number }[];
  };
}

/** Listing entries without the "version" pseudo-entry. */
export function loadListing(which: 'v1' | 'v2'): ListingEntry[] {
  const all = JSON.parse(readFileSync(join(pxarDir, `archive-${which}.listing.json`), 'utf8')) as ListingEntry[];
  return all.filter((e) => e.kind !== 'version');
}

/** Upstream prints targets with their trailing NUL; we strip it. */
function stripNul(s: string): Buffer {
  const b = Buffer.from(s, 'utf8');
  return b.length > 0 && b[b.length - 1] === 0 ? b.subarray(0, b.length - 1) : b;
}

export function pathBytes(e: ListingEntry): Buffer {
  return Buffer.from(e.path_hex, 'hex');
}

/**
 * Compares one decoded entry (hardlinks NOT resolved) with its listing line; `contents` is the
 * file's full content for files (undefined otherwise).
 */
export function expectEntryMatches(exp: ListingEntry, got: PxarEntry, contents: Buffer | undefined, path: Buffer): void {
  const where = exp.path;
  expect(path.toString('hex'), where).toBe(exp.path_hex);
  expect(got.kind, where).toBe(exp.kind);
  if (exp.kind === 'hardlink') {
    expect(got.hardlink, where).toBeDefined();
    expect(got.hardlink!.target.toString('hex'), where).toBe(stripNul(exp.hardlink_target!).toString('hex'));
    expect(got.hardlink!.offset, where).toBe(exp.hardlink_offset);
    return;
  }
  const md = got.metadata!;
  expect(md.stat.mode, where).toBe(exp.mode_dec);
  expect(md.stat.flags, where).toBe(exp.flags);
  expect(md.stat.uid, where).toBe(exp.uid);
  expect(md.stat.gid, where).toBe(exp.gid);
  expect(md.stat.mtimeSecs, where).toBe(exp.mtime!.secs);
  expect(md.stat.mtimeNanos, where).toBe(exp.mtime!.nanos);
  if (exp.kind === 'file') {
    expect(got.size, where).toBe(exp.size);
    if (exp.payload_offset !== undefined) expect(got.payloadOffset, where).toBe(exp.payload_offset);
    expect(contents, where).toBeDefined();
    expect(contents!.length, where).toBe(exp.size);
    expect(createHash('sha256').update(contents!).digest('hex'), where).toBe(exp.sha256);
    if (exp.content_hex !== undefined) expect(contents!.toString('hex'), where).toBe(exp.content_hex);
  } else {
    expect(contents, where).toBeUndefined();
  }
  if (exp.kind === 'symlink') {
    expect(got.symlinkTarget!.toString('hex'), where).toBe(stripNul(exp.symlink_target!).toString('hex'));
  } else {
    expect(got.symlinkTarget, where).toBeUndefined();
  }
  if (exp.kind === 'chardev' || exp.kind === 'blockdev') {
    expect(got.device, where).toEqual({ major: exp.device_major, minor: exp.device_minor });
  } else {
    expect(got.device, where).toBeUndefined();
  }
  expect(
    md.xattrs.map((x) => ({ name: x.name.toString('utf8'), value_hex: x.value.toString('hex') })),
    where,
  ).toEqual(exp.xattrs ?? []);
  expect(md.fcaps?.toString('hex'), where).toBe(exp.fcaps_hex);
  const acl = exp.acl;
  expect(md.acl.users.map((u) => ({ uid: u.id, permissions: u.permissions })), where).toEqual(acl?.users ?? []);
  expect(md.acl.groups.map((u) => ({ gid: u.id, permissions: u.permissions })), where).toEqual(acl?.groups ?? []);
  expect(md.acl.defaultUsers.map((u) => ({ uid: u.id, permissions: u.permissions })), where).toEqual(acl?.default_users ?? []);
  expect(md.acl.defaultGroups.map((u) => ({ gid: u.id, permissions: u.permissions })), where).toEqual(acl?.default_groups ?? []);
  expect(md.acl.groupObj, where).toBe(acl?.group_obj?.permissions ?? undefined);
  const d = acl?.default ?? null;
  expect(
    md.acl.default === undefined
      ? null
      : {
          user_obj_permissions: md.acl.default.userObj,
          group_obj_permissions: md.acl.default.groupObj,
          other_permissions: md.acl.default.other,
          mask_permissions: md.acl.default.mask,
        },
    where,
  ).toEqual(d);
}
