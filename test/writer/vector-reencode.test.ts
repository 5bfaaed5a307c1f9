/**
 * Re-encodes the vector fixture tree from its decoder listings and compares with the upstream
 * archives byte for byte: archive-v1.pxar (unified) and archive-v2.mpxar + .ppxar (split).
 * File contents come from content_hex or, for larger files, from the v2 payload stream at the
 * listed payload_offset (the v1 and v2 archives hold the same tree).
 */
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { PxarEncoder, type ByteSink, type PxarMeta } from '../../src/writer/pxar-encoder.js';
import { pxarDir } from '../helpers/paths.js';

interface ListingEntry {
  kind: string;
  path_hex: string;
  mode_dec?: number;
  flags?: number;
  uid?: number;
  gid?: number;
  mtime?: { secs: number; nanos: number };
  size?: number;
  payload_offset?: number;
  content_hex?: string;
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
    default: { user_obj_permissions: number; group_obj_permissions: number; other_permissions: number; mask_permissions: number } | null;
    default_users: { uid: number; permissions: number }[];
    default_groups: { gid: number; permissions: number }[];
  };
}

class MemSink implements ByteSink {
  parts: Buffer[] = [];
  write(d: Uint8Array): void {
    this.parts.push(Buffer.from(d));
  }
  get bytes(): Buffer {
    return Buffer.concat(this.parts);
  }
}

const big = (v: number) => BigInt(Math.round(v)); // NO_MASK arrives as a float near 2^64
function perm(v: number): bigint {
  return v > 2 ** 53 ? 0xffffffffffffffffn : big(v);
}

function metaOf(e: ListingEntry): PxarMeta {
  const m: PxarMeta = {
    mode: e.mode_dec!,
    flags: e.flags ?? 0,
    uid: e.uid!,
    gid: e.gid!,
    mtimeSecs: e.mtime!.secs,
    mtimeNanos: e.mtime!.nanos,
  };
  if (e.xattrs) m.xattrs = e.xattrs.map((x) => ({ name: Buffer.from(x.name, 'utf8'), value: Buffer.from(x.value_hex, 'hex') }));
  if (e.acl) {
    const a = e.acl;
    m.acl = {
      users: a.users.map((u) => ({ uid: u.uid, permissions: perm(u.permissions) })),
      groups: a.groups.map((g) => ({ gid: g.gid, permissions: perm(g.permissions) })),
      defaultUsers: a.default_users.map((u) => ({ uid: u.uid, permissions: perm(u.permissions) })),
      defaultGroups: a.default_groups.map((g) => ({ gid: g.gid, permissions: perm(g.permissions) })),
    };
    if (a.group_obj) m.acl.groupObj = perm(a.group_obj.permissions);
    if (a.default) {
      m.acl.default = {
        userObj: perm(a.default.user_obj_permissions),
        groupObj: perm(a.default.group_obj_permissions),
        other: perm(a.default.other_permissions),
        mask: perm(a.default.mask_permissions),
      };
    }
  }
  if (e.fcaps_hex !== undefined) m.fcaps = Buffer.from(e.fcaps_hex, 'hex');
  return m;
}

const stripNul = (s: string) => Buffer.from(s.endsWith('\0') ? s.slice(0, -1) : s, 'utf8');

/** Replays a listing into an encoder, the way the filesystem walk would. */
export function encodeListing(listing: ListingEntry[], contentOf: (e: ListingEntry) => Buffer, payload?: ByteSink): Buffer {
  const out = new MemSink();
  const entries = listing.filter((e) => e.kind !== 'version');
  const rootEntry = entries[0]!;
  const enc = new PxarEncoder(out, metaOf(rootEntry), payload ? { payload } : {});
  const open: Buffer[] = [Buffer.from('/')]; // paths of open directories
  const linkOffsets = new Map<string, number>();
  for (const e of entries.slice(1)) {
    const path = Buffer.from(e.path_hex, 'hex');
    const cut = path.lastIndexOf(0x2f);
    const parent = cut === 0 ? Buffer.from('/') : path.subarray(0, cut);
    const name = path.subarray(cut + 1);
    while (!open[open.length - 1]!.equals(parent)) {
      enc.endDirectory();
      open.pop();
    }
    switch (e.kind) {
      case 'directory':
        enc.beginDirectory(name, metaOf(e));
        open.push(path);
        break;
      case 'file': {
        const data = contentOf(e);
        linkOffsets.set(path.subarray(1).toString('hex'), enc.addFile(name, metaOf(e), data));
        break;
      }
      case 'symlink':
        enc.addSymlink(name, metaOf(e), stripNul(e.symlink_target!));
        break;
      case 'hardlink': {
        const target = stripNul(e.hardlink_target!);
        const off = linkOffsets.get(target.toString('hex'));
        expect(off).toBeDefined();
        enc.addHardlink(name, target, off!);
        break;
      }
      case 'blockdev':
      case 'chardev':
        enc.addDevice(name, metaOf(e), e.device_major!, e.device_minor!);
        break;
      case 'fifo':
      case 'socket':
        enc.addSpecial(name, metaOf(e));
        break;
      default:
        throw new Error(`unknown kind ${e.kind}`);
    }
  }
  while (open.length > 1) {
    enc.endDirectory();
    open.pop();
  }
  enc.finish();
  return out.bytes;
}

const load = (f: string) => JSON.parse(readFileSync(join(pxarDir, f), 'utf8')) as ListingEntry[];

describe('re-encoding the vector fixture tree', () => {
  const v1 = load('archive-v1.listing.json');
  const v2 = load('archive-v2.listing.json');
  const ppxar = readFileSync(join(pxarDir, 'archive-v2.ppxar'));
  const byPath = new Map(v2.filter((e) => e.kind === 'file').map((e) => [e.path_hex, e]));
  const contentOf = (e: ListingEntry): Buffer => {
    if (e.content_hex !== undefined) return Buffer.from(e.content_hex, 'hex');
    const p = byPath.get(e.path_hex)!;
    const data = ppxar.subarray(p.payload_offset! + 16, p.payload_offset! + 16 + p.size!);
    expect(createHash('sha256').update(data).digest('hex')).toBe(e.sha256);
    return data;
  };

  it('gives archive-v1.pxar byte for byte', () => {
    const bytes = encodeListing(v1, contentOf);
    const want = readFileSync(join(pxarDir, 'archive-v1.pxar'));
    expect(bytes.length).toBe(want.length);
    expect(bytes.equals(want)).toBe(true);
  });

  it('gives archive-v2.mpxar and archive-v2.ppxar byte for byte', () => {
    const payload = new MemSink();
    const bytes = encodeListing(v2, contentOf, payload);
    const want = readFileSync(join(pxarDir, 'archive-v2.mpxar'));
    expect(bytes.length).toBe(want.length);
    expect(bytes.equals(want)).toBe(true);
    expect(payload.bytes.equals(ppxar)).toBe(true);
  });
});
