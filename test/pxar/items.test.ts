/**
 * Every metadata item and its validation, on §15.1 with items spliced into the a.txt entry (the
 * goodbye record and the root tail are fixed up so the archive stays consistent).
 */
import { describe, expect, it } from 'vitest';
import { FormatError, LimitError, PbsfsError } from '../../src/errors.js';
import { BufferReadAt } from '../../src/io/read-at.js';
import { PxarAccessor } from '../../src/pxar/accessor.js';
import { PXAR } from '../../src/pxar/format.js';
import { PxarSequentialDecoder } from '../../src/pxar/sequential.js';
import { UNIFIED_V1 } from './spec-examples.js';

function item(htype: bigint, content: Buffer): Buffer {
  const h = Buffer.alloc(16);
  h.writeBigUInt64LE(htype, 0);
  h.writeBigUInt64LE(BigInt(16 + content.length), 8);
  return Buffer.concat([h, content]);
}
const u64s = (...v: (number | bigint)[]): Buffer => {
  const b = Buffer.alloc(8 * v.length);
  v.forEach((x, i) => b.writeBigUInt64LE(BigInt(x), 8 * i));
  return b;
};

/** §15.1 with `entry` replacing a.txt's ENTRY (56 bytes at 0x4e) and `attrs` inserted after it. */
function archive(attrs: Buffer[], entry?: Buffer): Buffer {
  const e = entry ?? UNIFIED_V1.subarray(0x4e, 0x86);
  const mid = Buffer.concat([e, ...attrs]);
  const k = mid.length - 56;
  const b = Buffer.concat([UNIFIED_V1.subarray(0, 0x4e), mid, UNIFIED_V1.subarray(0x86)]);
  const gb = 0x9b + k;
  b.writeBigUInt64LE(BigInt(0x63 + k), gb + 16 + 8);
  b.writeBigUInt64LE(BigInt(0x63 + k), gb + 16 + 16);
  b.writeBigUInt64LE(BigInt(gb), gb + 16 + 24 + 8);
  return b;
}

async function both(bytes: Buffer) {
  const acc = await PxarAccessor.open(new BufferReadAt('items.pxar', bytes));
  const viaLookup = await acc.lookupPath('a.txt');
  const seq = await PxarSequentialDecoder.open(new BufferReadAt('items.pxar', bytes));
  const all = [];
  for await (const e of seq.entries()) all.push(e);
  expect(all.length).toBe(2);
  return { acc, viaLookup: viaLookup!, viaSeq: all[1]! };
}

async function rejects(bytes: Buffer, what: RegExp, type: abstract new (...args: never[]) => PbsfsError = FormatError): Promise<void> {
  await expect(
    (async () => {
      const acc = await PxarAccessor.open(new BufferReadAt('items.pxar', bytes));
      await acc.lookupPath('a.txt');
    })(),
  ).rejects.toSatisfy((e: unknown) => e instanceof type && what.test((e as Error).message) && /items\.pxar at offset \d+/.test((e as Error).message));
  await expect(
    (async () => {
      const seq = await PxarSequentialDecoder.open(new BufferReadAt('items.pxar', bytes));
      for await (const _ of seq.entries()) void _;
    })(),
  ).rejects.toSatisfy((e: unknown) => e instanceof type && what.test((e as Error).message));
}

describe('pxar metadata items', () => {
  it('decodes every attribute kind, in both decoders', async () => {
    const bytes = archive([
      item(PXAR.XATTR, Buffer.from('user.a\0v\0w')),
      item(PXAR.XATTR, Buffer.from('user.e\0')),
      item(PXAR.ACL_USER, u64s(1000, 6)),
      item(PXAR.ACL_GROUP, u64s(100, 4)),
      item(PXAR.ACL_GROUP_OBJ, u64s(5)),
      item(PXAR.ACL_DEFAULT, u64s(7, 5, 0, 0xffffffffffffffffn)),
      item(PXAR.ACL_DEFAULT_USER, u64s(1001, 7)),
      item(PXAR.ACL_DEFAULT_GROUP, u64s(101, 5)),
      item(PXAR.FCAPS, Buffer.from('0100000200200000', 'hex')),
      item(PXAR.QUOTA_PROJID, u64s(42)),
    ]);
    const { acc, viaLookup, viaSeq } = await both(bytes);
    for (const e of [viaLookup, viaSeq]) {
      const md = e.metadata!;
      expect(md.xattrs).toEqual([
        { name: Buffer.from('user.a'), value: Buffer.from('v\0w') },
        { name: Buffer.from('user.e'), value: Buffer.alloc(0) },
      ]);
      expect(md.acl.users).toEqual([{ id: 1000, permissions: 6 }]);
      expect(md.acl.groups).toEqual([{ id: 100, permissions: 4 }]);
      expect(md.acl.groupObj).toBe(5);
      expect(md.acl.default).toEqual({ userObj: 7, groupObj: 5, other: 0, mask: 2 ** 64 });
      expect(md.acl.defaultUsers).toEqual([{ id: 1001, permissions: 7 }]);
      expect(md.acl.defaultGroups).toEqual([{ id: 101, permissions: 5 }]);
      expect(md.fcaps!.toString('hex')).toBe('0100000200200000');
      expect(md.quotaProjectId).toBe(42n);
      expect(e.size).toBe(5);
    }
    expect((await acc.read(viaLookup, 0, 5)).toString()).toBe('hello');
  });

  it('decodes the legacy ENTRY_V1 layout (u64 nanosecond mtime)', async () => {
    const c = Buffer.alloc(32);
    c.writeBigUInt64LE(0o100640n, 0);
    c.writeUInt32LE(7, 16);
    c.writeUInt32LE(8, 20);
    c.writeBigUInt64LE(1700000000123456789n, 24);
    const { viaLookup, viaSeq } = await both(archive([], item(PXAR.ENTRY_V1, c)));
    for (const e of [viaLookup, viaSeq]) {
      expect(e.metadata!.stat).toEqual({ mode: 0o100640, flags: 0, uid: 7, gid: 8, mtimeSecs: 1700000000, mtimeNanos: 123456789 });
    }
  });

  it('rejects malformed attributes with typed errors naming archive and offset', async () => {
    await rejects(archive([item(PXAR.XATTR, Buffer.from('novalue'))]), /no NUL/);
    await rejects(archive([item(PXAR.ACL_USER, u64s(1))]), /ACL_USER content is 8 bytes, expected 16/);
    await rejects(archive([item(PXAR.ACL_GROUP_OBJ, u64s(1)), item(PXAR.ACL_GROUP_OBJ, u64s(1))]), /multiple ACL_GROUP_OBJ/);
    await rejects(archive([item(PXAR.FCAPS, Buffer.alloc(1)), item(PXAR.FCAPS, Buffer.alloc(1))]), /multiple FCAPS/);
    await rejects(archive([item(PXAR.QUOTA_PROJID, u64s(1)), item(PXAR.QUOTA_PROJID, u64s(2))]), /multiple QUOTA_PROJID/);
    await rejects(archive([item(PXAR.ACL_DEFAULT, u64s(1, 2, 3))]), /ACL_DEFAULT content is 24 bytes/);
    await rejects(archive([item(PXAR.HARDLINK, Buffer.concat([u64s(1), Buffer.from('x\0')]))]), /HARDLINK item inside an entry/);
    await rejects(archive([item(PXAR.SYMLINK, Buffer.from('x\0'))]), /SYMLINK item in an entry with mode 0100644/);
    await rejects(archive([item(0x1234n, Buffer.alloc(0))]), /unexpected unknown type/);
    await rejects(archive([item(PXAR.PAYLOAD_REF, u64s(16, 5))]), /PAYLOAD_REF in a format version 1 archive/);
    await rejects(archive([item(PXAR.XATTR, Buffer.alloc(70000))]), /exceeds its limit/);
    await rejects(archive([], item(PXAR.ENTRY, Buffer.alloc(39))), /ENTRY content is 39 bytes, expected 40/);
    const badNanos = Buffer.from(UNIFIED_V1.subarray(0x4e, 0x86));
    badNanos.writeUInt32LE(1_000_000_000, 16 + 32);
    await rejects(archive([], badNanos), /nanoseconds/);
    // Many small xattrs: bounded in total.
    const many = Array.from({ length: 300 }, () => item(PXAR.XATTR, Buffer.concat([Buffer.from('user.x\0'), Buffer.alloc(65000)])));
    await rejects(archive(many), /exceed/, LimitError);
  });

  it('checks the format version and prelude placement', async () => {
    const withVersion = (v: bigint): Buffer => {
      const b = Buffer.concat([item(PXAR.FORMAT_VERSION, u64s(v)), UNIFIED_V1]);
      // The root tail points at the archive start; the goodbye moved by 24 bytes.
      b.writeBigUInt64LE(0x9bn + 24n, b.length - 16);
      return b;
    };
    const v1 = await PxarAccessor.open(new BufferReadAt('items.pxar', withVersion(1n)));
    expect(v1.version).toBe(1);
    expect((await v1.read((await v1.lookupPath('a.txt'))!, 0, 5)).toString()).toBe('hello');
    await expect(PxarAccessor.open(new BufferReadAt('items.pxar', withVersion(3n)))).rejects.toThrow(/unknown pxar format version 3/);
    await expect(PxarSequentialDecoder.open(new BufferReadAt('items.pxar', withVersion(3n)))).rejects.toThrow(/unknown pxar format version 3/);
    const preludeFirst = Buffer.concat([item(PXAR.PRELUDE, Buffer.from('x')), UNIFIED_V1]);
    await expect(PxarAccessor.open(new BufferReadAt('items.pxar', preludeFirst))).rejects.toThrow(/expected the root ENTRY item, found PRELUDE/);
    await expect(PxarAccessor.open(new BufferReadAt('items.pxar', Buffer.alloc(10)))).rejects.toThrow(/too small/);
  });
});
