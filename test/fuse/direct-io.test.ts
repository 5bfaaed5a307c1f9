/**
 * Large files are served with FOPEN_DIRECT_IO (past --page-cache-max, default 32 MiB): reads
 * bypass the kernel page cache (checked with fincore), stay byte-exact for streaming, random and
 * mmap readers, and their small reads are answered again from the mount's own small-read cache
 * (checked with the counters in user.pbsfs.stats). Smaller files keep the page cache.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readFileSync, readSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { dir, type DirectoryResult } from 'tmp-promise';
import { MountTracker, cliEnv, runCli } from '../helpers/mount-cli.js';

const tracker = new MountTracker();
let tmp: DirectoryResult;
let store = '';
const SNAP = 'host/direct/2024-01-01T00:00:00Z';
const big = randomBytes(40 * 1024 * 1024 + 12345);
const small = Buffer.from('a small file keeps the kernel page cache\n');
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

beforeAll(async () => {
  tmp = await dir({ unsafeCleanup: true });
  const src = join(tmp.path, 'src');
  mkdirSync(src);
  writeFileSync(join(src, 'big.bin'), big);
  writeFileSync(join(src, 'small.txt'), small);
  store = join(tmp.path, 'store');
  mkdirSync(join(store, '.chunks'), { recursive: true });
  const b = await runCli(
    ['--repository', store, 'backup', '--backup-type', 'host', '--backup-id', 'direct', '--backup-time', '2024-01-01T00:00:00Z', '--crypt-mode', 'none', src],
    cliEnv(),
  );
  expect(b.code, b.stderr).toBe(0);
}, 120_000);

afterAll(async () => {
  tracker.cleanup();
  await tmp?.cleanup();
});

async function mount(extra: string[] = []): Promise<string> {
  const mp = tracker.mountpoint();
  const m = await runCli(['--repository', store, 'mount', ...extra, SNAP, 'root.pxar', mp], cliEnv());
  expect(m.code, m.stderr).toBe(0);
  return mp;
}

/** Pages of `path` in the kernel page cache. */
function residentPages(path: string): number {
  return Number(execFileSync('fincore', ['--noheadings', '--output', 'PAGES', path], { encoding: 'utf8' }).trim());
}

function stats(mp: string): { smallReadCache?: { hits: number; misses: number } } {
  return JSON.parse(execFileSync('getfattr', ['--only-values', '-n', 'user.pbsfs.stats', '--absolute-names', mp], { encoding: 'utf8' })) as never;
}

function readAt(path: string, offsets: number[], len: number): Buffer[] {
  const fd = openSync(path, 'r');
  try {
    return offsets.map((o) => {
      const b = Buffer.alloc(len);
      const n = readSync(fd, b, 0, len, o);
      return b.subarray(0, n);
    });
  } finally {
    closeSync(fd);
  }
}

describe('direct I/O for large files', () => {
  it('a large file streams exactly and leaves no pages in the kernel page cache; a small one does', async () => {
    const mp = await mount();
    expect(sha(readFileSync(join(mp, 'big.bin')))).toBe(sha(big));
    expect(residentPages(join(mp, 'big.bin'))).toBe(0);
    expect(readFileSync(join(mp, 'small.txt')).equals(small)).toBe(true);
    expect(residentPages(join(mp, 'small.txt'))).toBeGreaterThan(0);
  });

  it('random small reads are exact, and repeated ones come from the small-read cache', async () => {
    const mp = await mount();
    const offsets = Array.from({ length: 200 }, (_, i) => (i * 7919 * 4096 + i * 13) % (big.length - 100));
    offsets.push(big.length - 10); // a read running past the end
    const first = readAt(join(mp, 'big.bin'), offsets, 4096);
    first.forEach((b, i) => expect(b.equals(big.subarray(offsets[i]!, offsets[i]! + 4096)), `offset ${offsets[i]}`).toBe(true));
    const before = stats(mp).smallReadCache!;
    const again = readAt(join(mp, 'big.bin'), offsets, 4096);
    again.forEach((b, i) => expect(b.equals(first[i]!)).toBe(true));
    const after = stats(mp).smallReadCache!;
    expect(after.hits - before.hits).toBe(offsets.length);
    expect(after.misses).toBe(before.misses);
  });

  it('mmap(MAP_SHARED) of a large file reads the same bytes (where the kernel allows it)', async () => {
    const mp = await mount();
    const py = spawnSync(
      'python3',
      ['-c', 'import mmap,sys,hashlib\nf=open(sys.argv[1],"rb")\nm=mmap.mmap(f.fileno(),0,access=mmap.ACCESS_READ)\nprint(hashlib.sha256(m[:]).hexdigest())', join(mp, 'big.bin')],
      { encoding: 'utf8', maxBuffer: 1 << 20 },
    );
    if (py.status !== 0 && /No such device|ENODEV|Errno 19/.test(py.stderr)) return; // kernel before 6.6: no shared mmap of direct-I/O files
    expect(py.status, py.stderr).toBe(0);
    expect(py.stdout.trim()).toBe(sha(big));
  });

  it('--page-cache-max above the file size keeps it in the kernel page cache', async () => {
    const mp = await mount(['--page-cache-max', '1G']);
    expect(sha(readFileSync(join(mp, 'big.bin')))).toBe(sha(big));
    expect(residentPages(join(mp, 'big.bin'))).toBeGreaterThan(0);
  });

  it('a bad --page-cache-max is refused with one line', async () => {
    const r = await runCli(['--repository', store, 'mount', '--page-cache-max', 'lots', SNAP, 'root.pxar', tracker.mountpoint()], cliEnv());
    expect(r.code).not.toBe(0);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain('lots');
  });
});
