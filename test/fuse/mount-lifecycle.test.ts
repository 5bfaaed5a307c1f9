/**
 * Mount lifecycle cases mount-e2e does not cover (it has: SIGTERM, a stale mount after SIGKILL
 * cleared by `pbsfs umount`, plain umount refused while busy, a second mount on one point, and
 * the messages of a missing or non-directory mount point):
 * - SIGINT (Ctrl-C) to a --foreground mount: exit 0, gone from /proc/self/mountinfo; with a file
 *   open, detached at once and the process exits once the file is closed;
 * - `pbsfs umount --lazy` while a reader holds a file open: detached at once, the reader's next
 *   read answers (bytes or an error, never a hang, never wrong bytes), and the mount process
 *   exits once the file is closed;
 * - mount point errors: exit code, one sentence naming the path; a non-empty directory refused.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { promises as fsp, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { dir } from 'tmp-promise';
import { datastoreDir, vectorsDir } from '../helpers/paths.js';
import { expectedSnapshots } from '../helpers/datastore-expected.js';
import { MountTracker, runCli } from '../helpers/mount-cli.js';

const expected = { snapshots: expectedSnapshots() };
/** An unencrypted snapshot with a disk image (no key needed). */
const plainVm = expected.snapshots.find((s) => s.crypt_mode === 'none' && s.files['drive-scsi0.img.fidx'] !== undefined)!;

const tracker = new MountTracker();
afterEach(() => tracker.cleanup());
afterAll(() => tracker.cleanup());

const mounted = (mp: string): boolean => readFileSync('/proc/self/mountinfo', 'utf8').includes(` ${mp} `);

/** `p`, or the string 'TIMEOUT' when it has not settled within `ms`. */
async function within<T>(p: Promise<T>, ms: number): Promise<T | 'TIMEOUT'> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<'TIMEOUT'>((r) => (timer = setTimeout(() => r('TIMEOUT'), ms)));
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
  }
}

describe('mount lifecycle', () => {
  it('SIGINT to a --foreground mount unmounts it and exits 0', async () => {
    const mp = tracker.mountpoint();
    const { child } = await tracker.foreground(['--repository', datastoreDir, 'mount', '--foreground', plainVm.path, mp]);
    expect(mounted(mp)).toBe(true);
    await fsp.readdir(mp);
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    child.kill('SIGINT');
    expect(await within(exited, 10_000)).toBe(0);
    expect(mounted(mp)).toBe(false);
    expect(await fsp.readdir(mp)).toEqual([]);
  });

  it('SIGINT while a file is open: detached at once (with a message), exits 0 once the file is closed', async () => {
    const mp = tracker.mountpoint();
    const { child, stderr } = await tracker.foreground(['--repository', datastoreDir, 'mount', '--foreground', plainVm.path, mp]);
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    const fh = await fsp.open(join(mp, 'drive-scsi0.img'), 'r');
    try {
      child.kill('SIGINT');
      for (let i = 0; i < 100 && mounted(mp); i++) await new Promise((r) => setTimeout(r, 50));
      expect(mounted(mp)).toBe(false);
      expect(stderr()).toMatch(/busy/);
      expect(child.exitCode).toBeNull();
    } finally {
      await fh.close();
    }
    expect(await within(exited, 10_000)).toBe(0);
  });

  it('umount --lazy detaches a busy mount; the open file answers, then the process exits', async () => {
    const mp = tracker.mountpoint();
    const { child } = await tracker.foreground(['--repository', datastoreDir, 'mount', '--foreground', plainVm.path, mp]);
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    const img = join(mp, 'drive-scsi0.img');
    const fh = await fsp.open(img, 'r');
    let closed = false;
    try {
      const first = Buffer.alloc(65536);
      expect((await fh.read(first, 0, first.length, 0)).bytesRead).toBe(first.length);
      const busy = await runCli(['umount', mp]);
      expect(busy.code).not.toBe(0);
      expect(busy.stderr).toMatch(/busy/);

      const lazy = await runCli(['umount', '--lazy', mp]);
      expect(lazy.code, lazy.stderr).toBe(0);
      expect(mounted(mp)).toBe(false);
      // The held descriptor still reaches the (detached) filesystem: the read must answer, with
      // the same bytes as before or an error, within a bound.
      const again = Buffer.alloc(first.length);
      const r = await within(
        fh.read(again, 0, again.length, 0).then(
          ({ bytesRead }) => (bytesRead === 0 ? 'EOF' : again.subarray(0, bytesRead).equals(first.subarray(0, bytesRead)) ? 'SAME' : 'DIFFERENT'),
          (e: NodeJS.ErrnoException) => e.code ?? 'ERROR',
        ),
        10_000,
      );
      expect(r).not.toBe('TIMEOUT');
      expect(r).not.toBe('DIFFERENT');
      // Still running while the file is open (the kernel has not ended the session)...
      expect(child.exitCode).toBeNull();
      await fh.close();
      closed = true;
      // ...and gone once it is closed.
      expect(await within(exited, 10_000)).toBe(0);
    } finally {
      if (!closed) await fh.close().catch(() => undefined);
    }
  });

  it('mount point errors: exit code and one sentence naming the path; a non-empty directory is refused', async () => {
    const tmp = await dir({ unsafeCleanup: true });
    try {
      const expectRefused = async (mp: string, code: number, message: RegExp): Promise<void> => {
        const r = await runCli(['--repository', datastoreDir, 'mount', plainVm.path, mp]);
        expect(r.code, r.stderr).toBe(code);
        const lines = r.stderr.split('\n').filter((l) => l.length > 0);
        expect(lines, r.stderr).toHaveLength(1);
        expect(lines[0]).toContain(mp);
        expect(lines[0]).toMatch(message);
        expect(mounted(mp)).toBe(false);
      };
      const full = join(tmp.path, 'full');
      mkdirSync(full);
      writeFileSync(join(full, 'keep-me'), 'x');
      await expectRefused(full, 2, /not empty/);
      expect(readFileSync(join(full, 'keep-me'), 'utf8')).toBe('x');
      const hidden = join(tmp.path, 'hidden');
      mkdirSync(join(hidden, '.dot'), { recursive: true });
      await expectRefused(hidden, 2, /not empty/);
      await expectRefused(join(tmp.path, 'missing'), 4, /does not exist/);
      const file = join(tmp.path, 'file');
      writeFileSync(file, 'x');
      await expectRefused(file, 2, /not a directory/);
    } finally {
      await tmp.cleanup();
    }
  });
});
