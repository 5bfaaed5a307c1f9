/**
 * The request table: every opcode pbsfs answers has a decoder that refuses a body shorter than
 * its structure, so a short or garbled request gets an error, never a read past its end or a
 * misread field.
 */
import { describe, expect, it } from 'vitest';
import { FuseAdapter } from '../../src/fuse/adapter.js';
import { Errno, Op, type InHeader } from '../../src/fuse/protocol.js';
import { decodeRequest, MalformedRequest, REQUESTS } from '../../src/fuse/requests.js';
import { VfsCore, registerInodeDomain } from '../../src/vfs/core.js';
import { memoryTree } from '../helpers/memory-suite.js';

function header(opcode: number, nodeid = 1): InHeader {
  return { len: 40, opcode, unique: 7n, nodeid, uid: 0, gid: 0, pid: 1 };
}

function adapter(logs: string[] = []): FuseAdapter {
  const core = new VfsCore(registerInodeDomain(memoryTree().root), { log: (l) => logs.push(l) });
  return new FuseAdapter(core, { log: (l) => logs.push(l) });
}

function readIn(fh: number, offset: number, size: number): Buffer {
  const b = Buffer.alloc(40);
  b.writeBigUInt64LE(BigInt(fh), 0);
  b.writeBigUInt64LE(BigInt(offset), 8);
  b.writeUInt32LE(size, 16);
  return b;
}

describe('the FUSE request table', () => {
  it('decodes each known request into its typed fields', () => {
    expect(decodeRequest(Op.READ, readIn(5, 4096, 131072))).toEqual({ op: Op.READ, body: { fh: 5, offset: 4096, size: 131072 } });
    const gx = Buffer.concat([Buffer.from([0, 1, 0, 0, 0, 0, 0, 0]), Buffer.from('user.a\0')]);
    expect(decodeRequest(Op.GETXATTR, gx)).toEqual({ op: Op.GETXATTR, body: { size: 256, name: Buffer.from('user.a') } });
    const bf = Buffer.alloc(8 + 32);
    bf.writeUInt32LE(2, 0);
    bf.writeBigUInt64LE(9n, 8);
    bf.writeBigUInt64LE(1n, 16);
    bf.writeBigUInt64LE(10n, 24);
    bf.writeBigUInt64LE(3n, 32);
    expect(decodeRequest(Op.BATCH_FORGET, bf)).toEqual({
      op: Op.BATCH_FORGET,
      body: { items: [{ nodeid: 9, nlookup: 1 }, { nodeid: 10, nlookup: 3 }] },
    });
  });

  it('refuses every known request cut one byte short of its structure', () => {
    for (const [op, entry] of Object.entries(REQUESTS)) {
      if (entry.minBody === 0) continue;
      expect(() => decodeRequest(Number(op), Buffer.alloc(entry.minBody - 1)), entry.name).toThrow(MalformedRequest);
    }
  });

  it('refuses a name without its terminating NUL instead of taking the rest of the request', () => {
    expect(() => decodeRequest(Op.LOOKUP, Buffer.from('passwd'))).toThrow(MalformedRequest);
    expect(() => decodeRequest(Op.GETXATTR, Buffer.concat([Buffer.alloc(8), Buffer.from('user.a')]))).toThrow(MalformedRequest);
  });

  it('refuses a batch forget whose count runs past the request', () => {
    const b = Buffer.alloc(8 + 16);
    b.writeUInt32LE(1000, 0);
    expect(() => decodeRequest(Op.BATCH_FORGET, b)).toThrow(MalformedRequest);
  });

  it('knows nothing of opcodes outside the table', () => {
    expect(decodeRequest(Op.ACCESS, Buffer.alloc(8))).toBeUndefined();
    expect(decodeRequest(9999, Buffer.alloc(64))).toBeUndefined();
  });
});

describe('the adapter on hostile requests', () => {
  it('answers a short READ with EINVAL and logs it', async () => {
    const logs: string[] = [];
    expect(await adapter(logs).dispatch(header(Op.READ), Buffer.alloc(10))).toBe(-Errno.EINVAL);
    expect(logs.join('\n')).toMatch(/malformed request 15.*READ of 10 bytes/);
  });

  it('answers a LOOKUP without NUL with EINVAL, not a lookup of the bytes that follow', async () => {
    expect(await adapter().dispatch(header(Op.LOOKUP), Buffer.from('hello.txt'))).toBe(-Errno.EINVAL);
  });

  it('answers an unknown opcode with ENOSYS and a write-type one with EROFS', async () => {
    const a = adapter();
    expect(await a.dispatch(header(9999), Buffer.alloc(0))).toBe(-Errno.ENOSYS);
    expect(await a.dispatch(header(Op.WRITE), Buffer.alloc(100))).toBe(-Errno.EROFS);
  });

  it('sends no reply to a malformed FORGET (the kernel expects none)', async () => {
    expect(await adapter().dispatch(header(Op.FORGET), Buffer.alloc(3))).toBeNull();
  });
});
