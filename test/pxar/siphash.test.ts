import { describe, expect, it } from 'vitest';
import { PXAR, PXAR_MAGIC_STRINGS, type PxarTypeName } from '../../src/pxar/format.js';
import { PXAR_HASH_KEY0, PXAR_HASH_KEY1, pxarHash, pxarHashBytes, siphash24 } from '../../src/pxar/siphash.js';
import { createHash } from 'node:crypto';

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
});
