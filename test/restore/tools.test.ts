import { afterEach, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { lstatSync, linkSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { dir, type DirectoryResult } from 'tmp-promise';
import { applyTimes, applyXattrs, chattrLetters, detectTimeMethod, quoteDumpPath } from '../../src/restore/tools.js';

const temps: DirectoryResult[] = [];
async function tempDir(): Promise<string> {
  const t = await dir({ unsafeCleanup: true });
  temps.push(t);
  return t.path;
}
afterEach(async () => {
  for (const t of temps.splice(0)) await t.cleanup();
});

const ns = (p: string | Buffer): bigint => lstatSync(p, { bigint: true }).mtimeNs;

describe('restore tools', () => {
  it('python3 is available here, so times are exact to the nanosecond (also before 1970, on symlinks)', async () => {
    expect(await detectTimeMethod()).toBe('python');
    const d = await tempDir();
    const f = join(d, 'f');
    writeFileSync(f, '');
    symlinkSync('f', join(d, 'l'));
    expect(await applyTimes([{ path: Buffer.from(f), secs: 1700000000, nanos: 123456789 }], 'python')).toEqual([]);
    expect(ns(f)).toBe(1700000000123456789n);
    expect(await applyTimes([{ path: Buffer.from(join(d, 'l')), secs: -123456789, nanos: 5 }], 'python')).toEqual([]);
    expect(ns(join(d, 'l'))).toBe(-123456789n * 1_000_000_000n + 5n);
    expect(ns(f)).toBe(1700000000123456789n); // the symlink's target was not touched
  });

  it('touch fallback is exact too; plain fs.lutimes keeps microseconds (measured)', async () => {
    const d = await tempDir();
    const f = join(d, 'f');
    writeFileSync(f, '');
    expect(await applyTimes([{ path: Buffer.from(f), secs: -1, nanos: 999999999 }], 'touch')).toEqual([]);
    expect(ns(f)).toBe(-1n);
    expect(await applyTimes([{ path: Buffer.from(f), secs: 1700000000, nanos: 987654321 }], 'touch')).toEqual([]);
    expect(ns(f)).toBe(1700000000987654321n);
    expect(await applyTimes([{ path: Buffer.from(f), secs: 1700000000, nanos: 987654321 }], 'node')).toEqual([]);
    const err = ns(f) - 1700000000987654321n;
    expect(err < 0n ? -err : err).toBeLessThan(1000n);
  });

  it('setfattr dumps quote any path bytes (space, backslash, newline, non-UTF-8)', async () => {
    const d = await tempDir();
    const name = Buffer.concat([Buffer.from(d + '/a b\\c\n'), Buffer.from([0xff]), Buffer.from('"x')]);
    writeFileSync(name, 'x');
    expect(quoteDumpPath(Buffer.from('a b\\'))).toBe('a\\040b\\134');
    const problems = await applyXattrs([
      { path: name, xattrs: [{ name: Buffer.from('user.v'), value: Buffer.from([0, 1, 0xff]) }, { name: Buffer.from('user.e'), value: Buffer.alloc(0) }] },
    ]);
    expect(problems).toEqual([]);
    const probe = join(d, 'probe');
    linkSync(name, probe);
    const out = execFileSync('getfattr', ['-d', '-e', 'hex', probe], { encoding: 'utf8' });
    expect(out).toMatch(/^user\.v=0x0001ff$/m);
    expect(out).toMatch(/^user\.e=/m);
  });

  it('maps pxar flags to chattr letters', () => {
    expect(chattrLetters(0x20000)).toBe('A');
    expect(chattrLetters(0x400000 | 0x10000)).toBe('ai');
    expect(chattrLetters(0x2000 | 0x4000 | 0x8000)).toBe('');
  });
});
