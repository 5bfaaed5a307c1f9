/**
 * Security defaults of a mount (test/security/security-defaults.test.ts covers everything that
 * needs no mount):
 * - without --allow-other the kernel mount carries default_permissions (archived modes are
 *   enforced by the kernel) and no allow_other: another user cannot even stat a file in it
 *   (with --allow-other, the contrast, the same user can);
 * - the mount is ro, nosuid, nodev;
 * - the daemonized mount process sees neither the passphrase nor the decrypted key in its argv
 *   or its environment (the key travels over a pipe, which is closed once read), and a
 *   --foreground mount holds neither in its argv.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { dir } from 'tmp-promise';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { MountTracker, cliEnv, runCli } from '../helpers/mount-cli.js';
import { openFds } from '../helpers/proc-fds.js';
import { expectedSnapshots } from '../helpers/datastore-expected.js';
import { VECTOR_PASSPHRASE, datastoreDir, keysDir } from '../helpers/paths.js';

const keysExpected = JSON.parse(readFileSync(join(keysDir, 'expected.json'), 'utf8')) as { raw_key_hex: string };
const rawKey = Buffer.from(keysExpected.raw_key_hex, 'hex');
/** Forms the passphrase or key could appear in. */
const secrets = [VECTOR_PASSPHRASE, rawKey.toString('hex'), rawKey.toString('base64').replace(/=+$/, '')];
/** An encrypted snapshot with a disk image; mounted with the passphrase-protected key file. */
const encVm = expectedSnapshots().find((s) => s.crypt_mode === 'encrypt' && s.files['drive-scsi0.img.fidx'] !== undefined)!;
const keyfile = join(keysDir, 'key-scrypt.json');

const tracker = new MountTracker();
afterEach(() => tracker.cleanup());
afterAll(() => tracker.cleanup());

function mountinfoLine(mp: string): string {
  const line = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .find((l) => l.split(' ')[4] === mp);
  expect(line, `${mp} is not in /proc/self/mountinfo`).toBeDefined();
  return line!;
}

/** Pids of processes with a descriptor open on `path` (how the detached daemon is found). */
function pidsHolding(path: string): number[] {
  return [...new Set(openFds().filter((f) => f.target === path).map((f) => f.pid))];
}

function readlinkSafe(p: string): string | undefined {
  try {
    return readlinkSync(p);
  } catch {
    return undefined;
  }
}

function leaks(what: string, data: Buffer): string[] {
  return secrets.filter((s) => data.includes(s)).map((s) => `${what} holds ${s === VECTOR_PASSPHRASE ? 'the passphrase' : 'the key'}`);
}

describe('mount security defaults', () => {
  it('daemon: default_permissions, no allow_other, ro/nosuid/nodev; other users are kept out; no secret in argv or environment', async () => {
    const tmp = await dir({ unsafeCleanup: true });
    try {
      const log = join(tmp.path, 'mount.log');
      const mp = tracker.mountpoint();
      // The passphrase comes from the environment, as a user would give it.
      const r = await runCli(['--repository', datastoreDir, '--keyfile', keyfile, 'mount', '--log-file', log, encVm.path, mp], cliEnv({ PBS_ENCRYPTION_PASSWORD: VECTOR_PASSPHRASE }));
      expect(r.code, r.stderr).toBe(0);

      const line = mountinfoLine(mp);
      // Fields: id parent dev root MOUNTPOINT MOUNT-OPTIONS [tags] - fstype source SUPER-OPTIONS.
      const mountOpts = line.split(' ')[5]!;
      const superOpts = line.split(' - ')[1]!.split(' ')[2]!;
      expect(superOpts.split(',')).toContain('default_permissions');
      expect(line).not.toMatch(/allow_other/);
      expect(mountOpts.split(',')).toEqual(expect.arrayContaining(['ro', 'nosuid', 'nodev']));

      // Another user cannot enter the mount at all (the kernel refuses before pbsfs is asked).
      const other = spawnSync('stat', [join(mp, 'drive-scsi0.img')], { uid: 65534, gid: 65534, encoding: 'utf8' });
      expect(other.status).not.toBe(0);
      expect(other.stderr).toMatch(/Permission denied/);

      // The daemon: the one process holding the log file open.
      const pids = pidsHolding(log);
      expect(pids).toHaveLength(1);
      const pid = pids[0]!;
      const cmdline = readFileSync(`/proc/${pid}/cmdline`);
      expect(cmdline.toString()).toContain('--daemon-child');
      const environ = readFileSync(`/proc/${pid}/environ`);
      expect([...leaks('argv', cmdline), ...leaks('environment', environ)]).toEqual([]);
      expect(environ.toString()).not.toMatch(/PBS_ENCRYPTION_PASSWORD/);
      // The plan pipe (fd 3) is closed once read; only the /dev/fuse descriptor is left besides
      // files (log, stdio).
      const pipes = readdirSync(`/proc/${pid}/fd`)
        .map((fd) => [fd, readlinkSafe(`/proc/${pid}/fd/${fd}`) ?? ''] as const)
        .filter(([fd, target]) => Number(fd) >= 3 && target.startsWith('pipe:'));
      expect(pipes.map(([fd]) => fd)).not.toContain('3');

      // And it still reads the encrypted image.
      expect(readFileSync(join(mp, 'drive-scsi0.img')).length).toBeGreaterThan(0);
    } finally {
      tracker.cleanup();
      await tmp.cleanup();
    }
  });

  it('--foreground: no secret in argv', async () => {
    const mp = tracker.mountpoint();
    const { child } = await tracker.foreground(
      ['--repository', datastoreDir, '--keyfile', keyfile, 'mount', '--foreground', encVm.path, mp],
      cliEnv({ PBS_ENCRYPTION_PASSWORD: VECTOR_PASSPHRASE }),
    );
    expect(leaks('argv', readFileSync(`/proc/${child.pid}/cmdline`))).toEqual([]);
    expect(mountinfoLine(mp)).not.toMatch(/allow_other/);
  });

  it('--allow-other (the contrast): the same user gets in, the archived permissions still apply', async () => {
    const mp = tracker.mountpoint();
    const r = await runCli(['--repository', datastoreDir, '--keyfile', keyfile, 'mount', '--allow-other', encVm.path, mp], cliEnv({ PBS_ENCRYPTION_PASSWORD: VECTOR_PASSPHRASE }));
    expect(r.code, r.stderr).toBe(0);
    const other = spawnSync('stat', ['-c', '%a', join(mp, 'drive-scsi0.img')], { uid: 65534, gid: 65534, encoding: 'utf8' });
    expect(other.status, other.stderr).toBe(0);
    const write = spawnSync('sh', ['-c', `: > '${join(mp, 'drive-scsi0.img')}'`], { uid: 65534, gid: 65534, encoding: 'utf8' });
    expect(write.status).not.toBe(0);
  });
});
