import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { crc32, crc32Js } from '../../src/util/crc32.js';

describe('crc32', () => {
  it('check value of "123456789" and the empty input', () => {
    const check = Buffer.from('123456789');
    expect(crc32(check)).toBe(0xcbf43926);
    expect(crc32Js(check)).toBe(0xcbf43926);
    expect(crc32(Buffer.alloc(0))).toBe(0);
    expect(crc32Js(Buffer.alloc(0))).toBe(0);
  });

  it('spec 2.9: crc32("hello") = 0x3610a686', () => {
    expect(crc32(Buffer.from('hello'))).toBe(0x3610a686);
    expect(crc32Js(Buffer.from('hello'))).toBe(0x3610a686);
  });

  it('the slice-by-8 fallback agrees with the native one at every length and alignment', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat(7), (data, off) => {
        const sub = data.subarray(Math.min(off, data.length));
        expect(crc32Js(sub)).toBe(crc32(sub));
      }),
      { numRuns: 300 },
    );
  });
});
