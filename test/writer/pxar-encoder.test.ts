import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { goodbyeBstPermutation, PxarEncoder, type ByteSink, type PxarMeta } from '../../src/writer/pxar-encoder.js';

class MemSink implements ByteSink {
  parts: Buffer[] = [];
  write(d: Uint8Array): void {
    this.parts.push(Buffer.from(d));
  }
  get bytes(): Buffer {
    return Buffer.concat(this.parts);
  }
}

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const n = (s: string) => Buffer.from(s, 'utf8');
const root: PxarMeta = { mode: 0o40755, uid: 0, gid: 0, mtimeSecs: 1700000000, mtimeNanos: 0 };
const aTxt: PxarMeta = { mode: 0o100644, uid: 0, gid: 0, mtimeSecs: 1700000000, mtimeNanos: 0 };

describe('goodbye BST permutation', () => {
  const expected: Record<number, number[]> = {
    1: [0], 2: [1, 0], 3: [1, 0, 2], 4: [2, 1, 3, 0], 5: [3, 1, 4, 0, 2], 6: [3, 1, 5, 0, 2, 4],
    7: [3, 1, 5, 0, 2, 4, 6], 8: [4, 2, 6, 1, 3, 5, 7, 0], 9: [5, 3, 7, 1, 4, 6, 8, 0, 2],
    10: [6, 3, 8, 1, 5, 7, 9, 0, 2, 4], 11: [7, 3, 9, 1, 5, 8, 10, 0, 2, 4, 6],
    12: [7, 3, 10, 1, 5, 9, 11, 0, 2, 4, 6, 8], 13: [7, 3, 11, 1, 5, 9, 12, 0, 2, 4, 6, 8, 10],
    14: [7, 3, 11, 1, 5, 9, 13, 0, 2, 4, 6, 8, 10, 12], 15: [7, 3, 11, 1, 5, 9, 13, 0, 2, 4, 6, 8, 10, 12, 14],
    16: [8, 4, 12, 2, 6, 10, 14, 1, 3, 5, 7, 9, 11, 13, 15, 0],
    17: [9, 5, 13, 3, 7, 11, 15, 1, 4, 6, 8, 10, 12, 14, 16, 0, 2],
  };
  it('matches the upstream unit-test permutations for n = 0..17', () => {
    expect(goodbyeBstPermutation(0)).toEqual([]);
    for (const [k, v] of Object.entries(expected)) expect(goodbyeBstPermutation(Number(k))).toEqual(v);
  });
  it('is a permutation with the BST property for larger n', () => {
    for (const count of [31, 32, 33, 100, 1000, 4097]) {
      const p = goodbyeBstPermutation(count);
      expect([...p].sort((a, b) => a - b)).toEqual([...Array(count).keys()]);
      for (let i = 0; i < count; i++) {
        if (2 * i + 1 < count) expect(p[2 * i + 1]!).toBeLessThan(p[i]!);
        if (2 * i + 2 < count) expect(p[2 * i + 2]!).toBeGreaterThan(p[i]!);
      }
    }
  });
});

describe('pxar encoder: spec §15 worked examples', () => {
  it('§15.1 unified archive, byte for byte', () => {
    const out = new MemSink();
    const enc = new PxarEncoder(out, root);
    enc.addFile(n('a.txt'), aTxt, n('hello'));
    expect(enc.finish()).toEqual({ size: 219, payloadSize: 0 });
    expect(out.bytes.length).toBe(219);
    expect(out.bytes.subarray(0xab, 0xdb).toString('hex')).toBe(
      '72aa11b6662d39dc' + '6300000000000000' + '6300000000000000' + '55153e755bed5eef' + '9b00000000000000' + '4000000000000000',
    );
    expect(sha(out.bytes)).toBe('200881cf5383dbe4e1bca6087d86c63affa922af7489e523a26147ee089da5a9');
  });

  it('§15.2 split archive (mpxar + ppxar), byte for byte, and with a prelude', () => {
    const meta = new MemSink();
    const payload = new MemSink();
    const enc = new PxarEncoder(meta, root, { payload });
    enc.addFile(n('a.txt'), aTxt, n('hello'));
    expect(enc.finish()).toEqual({ size: 254, payloadSize: 53 });
    expect(sha(meta.bytes)).toBe('edbf4eab01f2faf4973ba843135a1c54c29e0a1c7d26603440ae9d154c81c6a8');
    expect(sha(payload.bytes)).toBe('edba01d6030ab961191ef0e8c93228d705f70ffdb6ee152762fb4a5c51992c2c');
    // goodbye size of the file counts the 5 payload bytes (§12.4)
    expect(meta.bytes.readBigUInt64LE(0xde)).toBe(115n);

    const meta2 = new MemSink();
    const payload2 = new MemSink();
    const enc2 = new PxarEncoder(meta2, root, { payload: payload2, prelude: n('PRE') });
    enc2.addFile(n('a.txt'), aTxt, n('hello'));
    enc2.finish();
    const m2 = meta2.bytes;
    expect(m2.length).toBe(254 + 19);
    expect(m2.subarray(0x18, 0x18 + 19).toString('hex')).toBe('1b777b9f9dd709e3130000000000000050' + '5245');
    expect(m2.readBigUInt64LE(m2.length - 16)).toBe(209n);
    expect(Buffer.concat([m2.subarray(0, 0x18), m2.subarray(0x18 + 19, m2.length - 16)]).equals(meta.bytes.subarray(0, meta.bytes.length - 16))).toBe(true);
    expect(payload2.bytes.equals(payload.bytes)).toBe(true);
  });

  it('§15.3 richer archive: subdirectory, xattr, negative mtime, hardlink, symlink', () => {
    const out = new MemSink();
    const enc = new PxarEncoder(out, root, { bufferSize: 64 }); // tiny buffer: exercises flushing
    const aOff = enc.addFile(n('a.txt'), aTxt, n('hello'));
    expect(aOff).toBe(0x38);
    enc.beginDirectory(n('d'), {
      mode: 0o40700, uid: 1000, gid: 1000, mtimeSecs: 1700000000, mtimeNanos: 5,
      xattrs: [{ name: n('user.k'), value: n('v') }],
    });
    enc.addFile(n('x'), { mode: 0o100600, uid: 1000, gid: 1000, mtimeSecs: -1, mtimeNanos: 999999999 }, n('hi'));
    enc.endDirectory();
    enc.addHardlink(n('h'), n('a.txt'), aOff);
    enc.addSymlink(n('s'), { mode: 0o120777, uid: 0, gid: 0, mtimeSecs: 0, mtimeNanos: 0 }, n('a.txt'));
    expect(enc.finish().size).toBe(689);
    expect(sha(out.bytes)).toBe('f67b047ddf101628cfa972ec111f4f0eff3700bdc381511c9dbf9ce0dfdacf67');
  });

  it('streams file data in pieces and in split mode keeps payload offsets contiguous', () => {
    const meta = new MemSink();
    const payload = new MemSink();
    const enc = new PxarEncoder(meta, root, { payload, bufferSize: 100 });
    const big = Buffer.alloc(200_000, 7);
    enc.beginFile(n('big'), aTxt, big.length);
    for (let i = 0; i < big.length; i += 65536) enc.writeFileData(big.subarray(i, i + 65536));
    enc.endFile();
    enc.addFile(n('c'), aTxt, n('xyz'));
    const r = enc.finish();
    expect(r.payloadSize).toBe(16 + 16 + 200_000 + 16 + 3 + 16);
    const p = payload.bytes;
    expect(p.subarray(32, 32 + 200_000).equals(big)).toBe(true);
    expect(meta.bytes.length).toBe(r.size);
  });

  it('refuses misuse: bad names, size mismatch, open directories, hardlinks forward', () => {
    const enc = new PxarEncoder(new MemSink(), root);
    for (const bad of ['', '.', '..', 'a/b', 'nul\0x']) expect(() => enc.addFile(n(bad), aTxt, n(''))).toThrow(/invalid file name/);
    enc.beginFile(n('f'), aTxt, 3);
    enc.writeFileData(n('ab'));
    expect(() => enc.endFile()).toThrow(/announced 3/);
    const enc2 = new PxarEncoder(new MemSink(), root);
    enc2.beginDirectory(n('d'), root);
    expect(() => enc2.finish()).toThrow(/still open/);
    const enc3 = new PxarEncoder(new MemSink(), root);
    expect(() => enc3.addHardlink(n('h'), n('x'), 1000)).toThrow(/earlier/);
    expect(() => new PxarEncoder(new MemSink(), aTxt)).toThrow(/directory/);
    expect(() => new PxarEncoder(new MemSink(), root, { prelude: n('x') })).toThrow(/split/);
  });
});
