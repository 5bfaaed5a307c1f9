import { describe, expect, it } from 'vitest';
import { PXAR, PXAR_MAGIC_STRINGS, type PxarTypeName } from '../../src/pxar/format.js';
import { PXAR_HASH_KEY0, PXAR_HASH_KEY1, pxarHash, pxarHashBytes, siphash24 } from '../../src/pxar/siphash.js';
import { createHash } from 'node:crypto';
import fc from 'fast-check';

const enc = (s: string): Buffer => Buffer.from(s, 'utf8');

describe('pxar SipHash-2-4', () => {
  it('derives its keys from sha1("PROXMOX ARCHIVE FORMAT")', () => {
    const h = createHash('sha1').update('PROXMOX ARCHIVE FORMAT').digest('hex');
    expect(BigInt('0x' + h.slice(0, 16))).toBe(PXAR_HASH_KEY0);
    expect(BigInt('0x' + h.slice(16, 32))).toBe(PXAR_HASH_KEY1);
  });

  it('matches the spec §4 vectors', () => {
    const vectors: [string, bigint][] = [
      ['', 0x76614015f8d1bb6cn],
      ['a.txt', 0xdc392d66b611aa72n],
      ['d', 0x25b61d6cbc2f47c3n],
      ['h', 0xfcb517b2b2698000n],
      ['s', 0xccae548c9d292361n],
      ['x', 0xdc196e50d6d8df05n],
      ['file_0', 0xa72d4eec8843fa66n],
      ['folder_0', 0xe093b923517a4b01n],
      ['.pxarexclude-cli', 0x046975ce672e09ebn],
      ['0123456789abcdefghij', 0xb85eebc4a3c350ffn],
      ['äöü.txt', 0x4bdd2aa887f8fde4n],
    ];
    for (const [name, want] of vectors) {
      expect(pxarHash(enc(name)), name).toBe(want);
      const b = pxarHashBytes(enc(name));
      expect(b.readBigUInt64LE(0), name).toBe(want);
    }
  });

  it('regenerates every type constant from its magic string', () => {
    for (const k of Object.keys(PXAR) as PxarTypeName[]) {
      expect(siphash24(PXAR_HASH_KEY0, PXAR_HASH_KEY1, enc(PXAR_MAGIC_STRINGS[k])), k).toBe(PXAR[k]);
    }
  });

  it('matches the reference paper vector (key 00..0f, message 00..0e)', () => {
    const key = Buffer.from([...Array(16).keys()]);
    const k0 = key.readBigUInt64LE(0);
    const k1 = key.readBigUInt64LE(8);
    const msg = Buffer.from([...Array(15).keys()]);
    expect(siphash24(k0, k1, msg)).toBe(0xa129ca6149be45e5n);
  });

  it('agrees with a plain BigInt SipHash-2-4 on random keys and messages of every length up to 64', () => {
    const M = (1n << 64n) - 1n;
    const rotl = (x: bigint, b: bigint): bigint => ((x << b) | (x >> (64n - b))) & M;
    const reference = (k0: bigint, k1: bigint, m: Uint8Array): bigint => {
      let v0 = k0 ^ 0x736f6d6570736575n;
      let v1 = k1 ^ 0x646f72616e646f6dn;
      let v2 = k0 ^ 0x6c7967656e657261n;
      let v3 = k1 ^ 0x7465646279746573n;
      const round = (): void => {
        v0 = (v0 + v1) & M; v1 = rotl(v1, 13n) ^ v0; v0 = rotl(v0, 32n);
        v2 = (v2 + v3) & M; v3 = rotl(v3, 16n) ^ v2;
        v0 = (v0 + v3) & M; v3 = rotl(v3, 21n) ^ v0;
        v2 = (v2 + v1) & M; v1 = rotl(v1, 17n) ^ v2; v2 = rotl(v2, 32n);
      };
      const padded = Buffer.alloc(Math.floor(m.length / 8) * 8 + 8);
      padded.set(m);
      padded[padded.length - 1] = m.length & 0xff;
      for (let i = 0; i < padded.length; i += 8) {
        const w = padded.readBigUInt64LE(i);
        v3 ^= w; round(); round(); v0 ^= w;
      }
      v2 ^= 0xffn; round(); round(); round(); round();
      return v0 ^ v1 ^ v2 ^ v3;
    };
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: M }), fc.bigInt({ min: 0n, max: M }), fc.uint8Array({ maxLength: 64 }), (k0, k1, m) => {
        expect(siphash24(k0, k1, m)).toBe(reference(k0, k1, m));
      }),
      { numRuns: 500 },
    );
  });
});
