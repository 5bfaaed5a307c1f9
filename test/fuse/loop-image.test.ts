/**
 * A disk image made by the test (mkfs.ext4 -d), backed up by pbsfs's own writer, mounted with
 * pbsfs and loop-mounted read-only from the FUSE mount: its files read back intact.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { dir, type DirectoryResult } from 'tmp-promise';
import { MountTracker, cliEnv, runCli } from '../helpers/mount-cli.js';

const tracker = new MountTracker();
let tmp: DirectoryResult | undefined;
let loopMp = '';

afterAll(async () => {
  if (loopMp) spawnSync('umount', ['-l', loopMp], { stdio: 'ignore' });
  tracker.cleanup();
  await tmp?.cleanup();
});

describe('loop-mounting an image from a pbsfs mount', () => {
  // Through the kernel page cache (24 MiB is below the default --page-cache-max) and direct.
  it.each([[[] as string[]], [['--page-cache-max', '0']]])('an ext4 image backed up by pbsfs mounts read-only and its files read back (%j)', async (extra: string[]) => {
    await tmp?.cleanup();
    tmp = await dir({ unsafeCleanup: true });
    const src = join(tmp.path, 'src');
    mkdirSync(join(src, 'sub'), { recursive: true });
    const big = randomBytes(700 * 1024);
    writeFileSync(join(src, 'hello.txt'), 'hello from ext4\n');
    writeFileSync(join(src, 'sub', 'big.bin'), big);
    const img = join(tmp.path, 'disk.img');
    execFileSync('truncate', ['-s', '24M', img]);
    execFileSync('mkfs.ext4', ['-q', '-F', '-d', src, img], { stdio: 'ignore' });
    const store = join(tmp.path, 'store');
    mkdirSync(join(store, '.chunks'), { recursive: true });
    const env = cliEnv();
    const b = await runCli(
      ['--repository', store, 'backup', '--backup-type', 'vm', '--backup-id', '901', '--backup-time', '2024-01-01T00:00:00Z', '--crypt-mode', 'none', '--image', `drive-scsi0=${img}`],
      env,
    );
    expect(b.code, b.stderr).toBe(0);
    const mp = tracker.mountpoint();
    const m = await runCli(['--repository', store, 'mount', ...extra, 'vm/901/2024-01-01T00:00:00Z', 'drive-scsi0.img', mp], env);
    expect(m.code, m.stderr).toBe(0);
    expect(readFileSync(join(mp, 'drive-scsi0.img')).equals(readFileSync(img))).toBe(true);
    loopMp = join(tmp.path, 'loop');
    mkdirSync(loopMp);
    execFileSync('mount', ['-o', 'loop,ro', '-t', 'ext4', join(mp, 'drive-scsi0.img'), loopMp]);
    expect(readFileSync(join(loopMp, 'hello.txt'), 'utf8')).toBe('hello from ext4\n');
    expect(readFileSync(join(loopMp, 'sub', 'big.bin')).equals(big)).toBe(true);
    execFileSync('umount', [loopMp]);
    loopMp = '';
  });
});
