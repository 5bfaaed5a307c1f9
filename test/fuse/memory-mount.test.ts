/**
 * The same behavioural suite as test/vfs/core.test.ts, through a real kernel mount of the
 * in-memory tree (mounted in this process), plus what only a kernel mount shows: EROFS for
 * writes, xattrs through getfattr, the stats xattr, and unmount with a file open.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawn, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { promises as fsp } from 'node:fs';
import { dir, type DirectoryResult } from 'tmp-promise';
import { VfsCore, registerInodeDomain } from '../../src/vfs/core.js';
import { mountCore, type MountedFs } from '../../src/fuse/mount.js';
import { kernelDriver } from '../helpers/fs-driver.js';
import { defineBehaviourSuite, memoryTree } from '../helpers/memory-suite.js';

// The mount is served by this process: anything that touches it must not block the event loop
// (no execFileSync / spawnSync against the mount point).
const run = promisify(execFile);
let tmp: DirectoryResult;
let m: MountedFs | undefined;
let mp = '';
const logs: string[] = [];

function forceUnmount(path: string): void {
  spawnSync('fusermount', ['-uz', path], { stdio: 'ignore' });
}

describe('kernel mount of an in-memory tree', () => {
  beforeAll(async () => {
    tmp = await dir({ unsafeCleanup: true });
    mp = tmp.path;
    const t = memoryTree();
    const core = new VfsCore(registerInodeDomain(t.root), { log: (l) => logs.push(l), stats: () => ({ chunksFetched: 0 }) });
    m = await mountCore(core, mp, { source: 'pbsfs-test' });
  });
  afterAll(async () => {
    forceUnmount(mp);
    await m?.done;
    await tmp?.cleanup();
  });

  defineBehaviourSuite(() => kernelDriver(mp));

  it('answers EROFS to every kind of write', async () => {
    const codes = async (f: () => Promise<unknown>): Promise<string> =>
      f().then(
        () => 'OK',
        (e: NodeJS.ErrnoException) => e.code ?? '?',
      );
    expect(await codes(() => fsp.writeFile(`${mp}/new`, 'x'))).toBe('EROFS');
    expect(await codes(() => fsp.writeFile(`${mp}/hello.txt`, 'x'))).toBe('EROFS');
    expect(await codes(() => fsp.open(`${mp}/hello.txt`, 'r+'))).toBe('EROFS');
    expect(await codes(() => fsp.mkdir(`${mp}/d`))).toBe('EROFS');
    expect(await codes(() => fsp.unlink(`${mp}/hello.txt`))).toBe('EROFS');
    expect(await codes(() => fsp.rename(`${mp}/hello.txt`, `${mp}/x`))).toBe('EROFS');
    expect(await codes(() => fsp.chmod(`${mp}/hello.txt`, 0o777))).toBe('EROFS');
    expect(await codes(() => fsp.symlink('x', `${mp}/s`))).toBe('EROFS');
    expect(await codes(() => fsp.truncate(`${mp}/hello.txt`, 0))).toBe('EROFS');
    const r = await run('setfattr', ['-n', 'user.x', '-v', '1', `${mp}/hello.txt`]).then(
      () => '',
      (e: { stderr: string }) => e.stderr,
    );
    expect(r).toMatch(/Read-only file system/);
  });

  it('shows xattrs through getfattr and the stats xattr on the root', async () => {
    const out = (await run('getfattr', ['-d', '-m', '-', '-e', 'hex', '--absolute-names', `${mp}/big.bin`])).stdout;
    expect(out).toContain('user.bin=0x00ff');
    expect(out).toContain('user.comment=0x6869');
    const dirOut = (await run('getfattr', ['-d', '-m', '-', '--absolute-names', `${mp}/dir`])).stdout;
    expect(dirOut).toContain('user.dirattr="on a dir"');
    const stats = (await run('getfattr', ['--only-values', '-n', 'user.pbsfs.stats', '--absolute-names', mp])).stdout;
    const j = JSON.parse(stats);
    expect(j.chunksFetched).toBe(0);
    expect(j.vfs.reads).toBeGreaterThan(0);
  });

  it('logged the corrupt read with the file name', () => {
    expect(logs.some((l) => l.includes('/corrupt.bin') && l.includes('digest 00ff'))).toBe(true);
  });

  it('refuses to unmount while a file is open, then unmounts', async () => {
    // The file is held open by a child: if this process held it, spawning fusermount would
    // deadlock (the fork's close-on-exec FLUSH needs this process, which waits in spawn).
    const holder = spawn('sh', ['-c', 'exec 7<"$1"; echo open; exec sleep 30', 'sh', `${mp}/hello.txt`], { stdio: ['ignore', 'pipe', 'ignore'] });
    await new Promise((r) => holder.stdout!.once('data', r));
    try {
      expect(await m!.unmount()).toBe('busy');
    } finally {
      holder.kill();
      await new Promise((r) => holder.once('exit', r));
    }
    expect(await m!.unmount()).toBe('unmounted');
    await m!.done;
    const st = await fsp.stat(mp);
    expect(st.isDirectory()).toBe(true);
    expect(await fsp.readdir(mp)).toEqual([]);
  });
});
