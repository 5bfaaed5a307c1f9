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

  it('opens directories without OPENDIR where the kernel supports it (no handle while unread)', async () => {
    const openDirs = async (): Promise<number> =>
      JSON.parse((await run('getfattr', ['--only-values', '-n', 'user.pbsfs.stats', '--absolute-names', mp])).stdout).vfs.openDirs;
    const d = await fsp.opendir(`${mp}/dir`);
    try {
      expect(await openDirs()).toBe(0);
    } finally {
      await d.close();
    }
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

// Kernels before 5.1 send OPENDIR and RELEASEDIR for every directory; this mount keeps that
// path (zero-message opendir off), so the handle-based listings stay tested on any kernel.
describe('kernel mount of an in-memory tree, with OPENDIR/RELEASEDIR', () => {
  let tmp2: DirectoryResult;
  let m2: MountedFs | undefined;
  let core2: VfsCore;
  beforeAll(async () => {
    tmp2 = await dir({ unsafeCleanup: true });
    core2 = new VfsCore(registerInodeDomain(memoryTree().root), { log: () => undefined });
    m2 = await mountCore(core2, tmp2.path, { source: 'pbsfs-test', zeroMessageOpendir: false });
  });
  afterAll(async () => {
    forceUnmount(tmp2.path);
    await m2?.done;
    await tmp2?.cleanup();
  });

  defineBehaviourSuite(() => kernelDriver(tmp2.path));

  it('opens directories through OPENDIR and releases them', async () => {
    const openDirs = (): number => (core2.statsSnapshot().vfs as { openDirs: number }).openDirs;
    // An open, unread directory holds a handle only when the kernel sent OPENDIR.
    const d = await fsp.opendir(`${tmp2.path}/dir`);
    expect(openDirs()).toBe(1);
    const names: string[] = [];
    for await (const e of d) names.push(e.name); // closes the directory at the end
    expect(names.sort()).toEqual(['link1', 'sub', 'sym']);
    // RELEASEDIR is sent asynchronously after close.
    for (let i = 0; i < 100 && openDirs() > 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(openDirs()).toBe(0);
  });
});
