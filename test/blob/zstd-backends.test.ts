/**
 * The zstd backends (native-shims/zstd.ts): every case runs through each backend this runtime
 * can load (zstd-napi everywhere it built; node:zlib on Node >= 22.15), so a runtime that picks
 * the other one decodes chunks the same way, with the same errors.
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import * as zlib from 'node:zlib';
import { ZstdError, ZstdLimitError, availableZstdBackends, zstdBackendName, type ZstdBackend } from '../../native-shims/zstd.js';
import { projectRoot } from '../helpers/paths.js';

const zlibHasZstd = typeof (zlib as unknown as { zstdDecompressSync?: unknown }).zstdDecompressSync === 'function';
const backends = availableZstdBackends();

/** The error a call throws, or undefined. */
function thrown(f: () => unknown): Error | undefined {
  try {
    f();
  } catch (e) {
    return e as Error;
  }
  return undefined;
}

describe('which zstd backends load', () => {
  it('the addon everywhere it was built, node:zlib where the runtime has zstd', () => {
    expect(backends.map((b) => b.name)).toEqual(zlibHasZstd ? ['zstd-napi', 'node:zlib'] : ['zstd-napi']);
  });

  it('the read path takes the addon (it decodes into given memory, in steps)', () => {
    expect(zstdBackendName()).toBe('zstd-napi');
  });

  it('PBSFS_ZSTD forces a backend, and says clearly when it cannot', () => {
    const shim = join(projectRoot, 'dist/native-shims/zstd.js');
    const run = (value: string) =>
      spawnSync(process.execPath, ['--input-type=module', '-e', `import('${shim}').then((m) => console.log(m.zstdBackendName()))`], {
        env: { ...process.env, PBSFS_ZSTD: value },
        encoding: 'utf8',
      });
    const napi = run('napi');
    expect(napi.stdout.trim()).toBe('zstd-napi');
    const z = run('zlib');
    if (zlibHasZstd) expect(z.stdout.trim()).toBe('node:zlib');
    else expect(z.stderr).toContain('PBSFS_ZSTD=zlib, but this Node');
    expect(run('zsdt').stderr).toContain('PBSFS_ZSTD must be "zlib" or "napi", not "zsdt"');
  });
});

describe.each(backends.map((b) => [b.name, b] as [string, ZstdBackend]))('zstd backend %s', (_name, b) => {
  const plain = Buffer.from(randomBytes(1_500_000).toString('base64'));
  const z = b.compress(plain, 1);
  const tail = plain.subarray(0, 1000);
  const two = Buffer.concat([z, b.compress(tail, 3)]); // two frames
  const twoPlain = Buffer.concat([plain, tail]);

  it('round-trips one frame and two, whole and into given memory', () => {
    for (const [src, want] of [
      [z, plain],
      [two, twoPlain],
    ] as const) {
      expect(b.decompress(src, want.length).equals(want)).toBe(true);
      const dst = Buffer.alloc(want.length);
      expect(b.decompressInto(src, dst)).toBe(want.length);
      expect(dst.equals(want)).toBe(true);
    }
  });

  it('decodes what the other backend compressed', () => {
    for (const other of backends) {
      const src = other.compress(plain, 3);
      expect(b.decompress(src, plain.length).equals(plain), other.name).toBe(true);
    }
  });

  it('reports growing counts that end at the bytes written (the addon in steps, node:zlib per frame)', () => {
    for (const [src, want, frames] of [
      [z, plain, 1],
      [two, twoPlain, 2],
    ] as const) {
      const reports: number[] = [];
      const dst = Buffer.alloc(want.length);
      const n = b.decompressInto(src, dst, { step: 256 * 1024, report: (w) => reports.push(w) });
      expect(n).toBe(want.length);
      expect(dst.equals(want)).toBe(true);
      if (b.name === 'zstd-napi') expect(reports.length).toBeGreaterThan(Math.floor(want.length / (256 * 1024)) - 1);
      else expect(reports.length).toBe(frames);
      expect(reports[reports.length - 1]).toBe(n);
      for (let i = 1; i < reports.length; i++) expect(reports[i]!).toBeGreaterThan(reports[i - 1]!);
    }
  });

  it('refuses output beyond the limit (a decompression bomb) with ZstdLimitError', () => {
    const bomb = b.compress(Buffer.alloc(8 * 1024 * 1024), 3);
    expect(bomb.length).toBeLessThan(4096);
    expect(thrown(() => b.decompress(bomb, 1024 * 1024))).toBeInstanceOf(ZstdLimitError);
    expect(thrown(() => b.decompressInto(bomb, Buffer.alloc(1024 * 1024)))).toBeInstanceOf(ZstdLimitError);
    // Exactly the limit is fine.
    expect(b.decompress(bomb, 8 * 1024 * 1024).length).toBe(8 * 1024 * 1024);
  });

  it('fails truncated and foreign input with ZstdError, the same way with and without progress', () => {
    const cases: [string, Uint8Array, number][] = [
      ['too little room', z, plain.length - 1],
      ['truncated frame', z.subarray(0, z.length - 100), plain.length],
      ['not zstd', randomBytes(5000), plain.length],
      ['empty', new Uint8Array(0), plain.length],
    ];
    for (const [what, src, room] of cases) {
      const plainErr = thrown(() => b.decompressInto(src, Buffer.alloc(room)));
      const steppedErr = thrown(() => b.decompressInto(src, Buffer.alloc(room), { step: 100_000, report: () => undefined }));
      expect(plainErr, what).toBeInstanceOf(ZstdError);
      expect(steppedErr?.constructor, what).toBe(plainErr!.constructor);
      expect(steppedErr?.message, what).toBe(plainErr!.message);
      if (what !== 'too little room') expect(thrown(() => b.decompress(src, room)), what).toBeInstanceOf(ZstdError);
    }
  });

  it('a failed call leaves the backend usable', () => {
    thrown(() => b.decompressInto(z.subarray(0, z.length - 100), Buffer.alloc(plain.length)));
    const dst = Buffer.alloc(plain.length);
    expect(b.decompressInto(z, dst)).toBe(plain.length);
    expect(dst.equals(plain)).toBe(true);
  });
});
