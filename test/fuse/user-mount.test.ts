/**
 * Mounting as a normal user through fusermount (the _FUSE_COMMFD protocol and the fdpass addon),
 * end to end: the CLI runs as `nobody` (setpriv), the mount appears with that user's id, files
 * read through it equal what `pbsfs cat` gives, `pbsfs umount` as the same user detaches it, and
 * the refusals (no access to /dev/fuse, --allow-other without user_allow_other) say what to do.
 * /dev/fuse is root-only here: the tests grant nobody an ACL entry and remove it afterwards.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chownSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { userAllowOther } from '../../native-shims/fusermount.js';
import { cliPath, datastoreDir, keysDir } from '../helpers/paths.js';
import { cliEnv, runCli } from '../helpers/mount-cli.js';

const NOBODY = 65534;
const SNAP = 'host/testhost/2024-06-01T11:00:00Z';
const keyfile = join(keysDir, 'key-scrypt.json');
const dirs: string[] = [];
const children: ChildProcess[] = [];

function asNobody(args: string[]): string[] {
  return ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, cliPath, ...args];
}

function runAsNobody(args: string[]): Promise<{ code: number; stdout: Buffer; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn('setpriv', asNobody(args), { env: cliEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    child.stdout!.on('data', (d: Buffer) => out.push(d));
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    child.on('close', (code) => resolve({ code: code ?? -1, stdout: Buffer.concat(out), stderr: err }));
  });
}

function nobodyDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'pbsfs-user-mnt-'));
  chownSync(d, NOBODY, NOBODY);
  dirs.push(d);
  return d;
}

const grantFuse = (): void => void spawnSync('setfacl', ['-m', `u:${NOBODY}:rw`, '/dev/fuse'], { stdio: 'inherit' });
const revokeFuse = (): void => void spawnSync('setfacl', ['-x', `u:${NOBODY}`, '/dev/fuse'], { stdio: 'ignore' });

function mountLine(mp: string): string | undefined {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .find((l) => l.split(' ')[4] === mp);
}

beforeAll(() => grantFuse());
afterAll(() => {
  for (const d of dirs) spawnSync('fusermount', ['-uz', d], { stdio: 'ignore' });
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  revokeFuse();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('mount as a normal user through fusermount', () => {
  it('mounts as nobody, serves the same bytes as cat, and pbsfs umount (as nobody) detaches it', async () => {
    const mp = nobodyDir();
    const child = spawn('setpriv', asNobody(['--repository', datastoreDir, '--keyfile', keyfile, 'mount', '--foreground', SNAP, 'root.pxar', mp]), {
      env: cliEnv(),
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    children.push(child);
    let err = '';
    const exited = new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
    await new Promise<void>((resolve, reject) => {
      child.stderr!.on('data', (d: Buffer) => {
        err += d.toString();
        if (err.includes('mounted at')) resolve();
      });
      child.once('exit', (c) => reject(new Error(`mount exited with ${c}: ${err}`)));
    });
    const line = mountLine(mp);
    expect(line).toBeDefined();
    expect(line).toMatch(/ - fuse\.pbsfs /);
    expect(line).toMatch(/user_id=65534,group_id=65534/);
    expect(line).toMatch(/\bro\b/);

    const viaMount = await new Promise<Buffer>((resolve) => {
      const c = spawn('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', 'cat', join(mp, 'hello.txt')], { stdio: ['ignore', 'pipe', 'inherit'] });
      const out: Buffer[] = [];
      c.stdout!.on('data', (d: Buffer) => out.push(d));
      c.on('close', () => resolve(Buffer.concat(out)));
    });
    const viaCat = await runCli(['--repository', datastoreDir, '--keyfile', keyfile, 'cat', SNAP, 'root.pxar', '/hello.txt']);
    expect(viaCat.code).toBe(0);
    expect(viaMount.length).toBeGreaterThan(0);
    expect(viaMount.equals(viaCat.stdout)).toBe(true);

    const um = await runAsNobody(['umount', mp]);
    expect(um.stderr).toBe('');
    expect(um.code).toBe(0);
    expect(await exited).toBe(0);
    expect(mountLine(mp)).toBeUndefined();
  });

  it('--allow-other without user_allow_other in /etc/fuse.conf: exit 6 naming the setting', async () => {
    expect(userAllowOther()).toBe(false);
    const mp = nobodyDir();
    const r = await runAsNobody(['--repository', datastoreDir, 'mount', '--foreground', '--allow-other', 'host/testhost/2024-06-02T11:00:00Z', mp]);
    expect(r.code).toBe(6);
    expect(r.stderr).toContain("--allow-other needs 'user_allow_other' in /etc/fuse.conf");
    expect(mountLine(mp)).toBeUndefined();
  });

  it('without access to /dev/fuse: exit 6, says who may fix it and that ls/cat/restore need no root', async () => {
    revokeFuse();
    try {
      const mp = nobodyDir();
      const r = await runAsNobody(['--repository', datastoreDir, 'mount', '--foreground', 'host/testhost/2024-06-02T11:00:00Z', mp]);
      expect(r.code).toBe(6);
      expect(r.stderr).toContain(`/dev/fuse is not readable and writable by uid ${NOBODY}`);
      expect(r.stderr).toContain('ls, cat and restore need neither a mount nor root');
      expect(mountLine(mp)).toBeUndefined();
    } finally {
      grantFuse();
    }
  });
});
