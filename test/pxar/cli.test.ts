/** `pbsfs ls`, `cat SNAPSHOT ARCHIVE PATH` and `restore` as a user runs them (built CLI, child process). */
import { afterEach, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { dir, type DirectoryResult } from 'tmp-promise';
import { expectedSnapshots, splitSnapshotPath } from '../helpers/datastore-expected.js';
import { VECTOR_PASSPHRASE, cliPath, datastoreDir, keysDir } from '../helpers/paths.js';
import { formatSnapshotRef } from '../../src/store/backup-ref.js';
import { compareTree, isRoot } from '../restore/compare.js';
import { loadListing } from './listing.js';

interface Run {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

function run(args: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cliPath, '--repository', datastoreDir, ...args], {
      env: { ...process.env, PBS_ENCRYPTION_PASSWORD: VECTOR_PASSPHRASE, PBS_REPOSITORY: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout: Buffer.concat(out), stderr: err }));
  });
}

const key = ['--keyfile', join(keysDir, 'key-scrypt.json')];
const snaps = expectedSnapshots();
const refOf = (p: string): string => formatSnapshotRef(splitSnapshotPath(p).ref);
const split = snaps.find((s) => 'root.mpxar.didx' in s.files && !s.namespace)!;
const encrypted = snaps.find((s) => 'root.pxar.didx' in s.files && s.crypt_mode === 'encrypt' && !s.namespace)!;
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

const temps: DirectoryResult[] = [];
afterEach(async () => {
  for (const t of temps.splice(0)) await t.cleanup();
});

describe('pbsfs ls / cat / restore on file archives', () => {
  it('ls lists the root directory in name order, for every archive spelling', async () => {
    const listing = loadListing('v2');
    const want = listing
      .filter((e) => e.path_hex.length > 2 && !Buffer.from(e.path_hex.slice(2), 'hex').includes(0x2f))
      .map((e) => Buffer.from(e.path_hex.slice(2), 'hex'))
      .sort(Buffer.compare);
    for (const name of ['root.pxar', 'root.mpxar.didx', 'root.pxar.didx']) {
      const r = await run(['ls', refOf(split.path), name]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout.toString('latin1')).toBe(want.map((b) => b.toString('latin1') + '\n').join(''));
    }
  });

  it('ls -l shows mode, owner, size, mtime and link targets; ls of a file shows the file', async () => {
    const r = await run([...key, 'ls', '-l', refOf(encrypted.path), 'root.pxar', '/links']);
    expect(r.code).toBe(0);
    const listing = loadListing('v1').filter((e) => e.path.startsWith('/links/'));
    const lines = r.stdout.toString().trimEnd().split('\n');
    expect(lines.length).toBe(listing.length);
    for (const e of listing) {
      const line = lines.find((l) => l.includes(` ${e.path.slice('/links/'.length)} -> `))!;
      expect(line, e.path).toBeDefined();
      expect(line.startsWith('lrwxrwxrwx')).toBe(true);
      expect(line.endsWith(`-> ${e.symlink_target!.replace(/\0$/, '')}`)).toBe(true);
      expect(line).toContain(new Date(e.mtime!.secs * 1000).toISOString().slice(0, 19).replace('T', ' '));
    }
    const f = await run([...key, 'ls', '-l', refOf(encrypted.path), 'root.pxar', '/modes/setuid']);
    expect(f.stdout.toString()).toMatch(/^-rwsr-xr-x 0 0 7 .* setuid\n$/);
    const j = await run([...key, '--output-format', 'json', 'ls', refOf(encrypted.path), 'root.pxar', '/special']);
    const items = JSON.parse(j.stdout.toString()) as Record<string, unknown>[];
    expect(items.map((i) => i.type)).toEqual(['blockdev', 'chardev', 'fifo', 'socket']);
    const missing = await run([...key, 'ls', refOf(encrypted.path), 'root.pxar', '/nope']);
    expect(missing.code).toBe(4);
    expect(missing.stderr).toMatch(/no such file or directory in the archive: \/nope/);
  });

  it('cat writes one file from inside an archive (encrypted unified and split)', async () => {
    for (const [s, which, extra] of [
      [encrypted, 'v1', key],
      [split, 'v2', []],
    ] as const) {
      // A sample (each run derives the key again): a big file, an empty one, a hardlink, a deep one.
      const sample = loadListing(which).filter(
        (e) => (e.kind === 'file' || e.kind === 'hardlink') && /^[\x20-\x7e]+$/.test(e.path),
      );
      const picks = [
        sample.reduce((a, b) => ((a.size ?? 0) >= (b.size ?? 0) ? a : b)),
        sample.find((e) => e.size === 0)!,
        sample.find((e) => e.kind === 'hardlink')!,
        sample.reduce((a, b) => (a.path.split('/').length >= b.path.split('/').length ? a : b)),
      ];
      for (const exp of picks) {
        const r = await run([...extra, 'cat', refOf(s.path), 'root.pxar', exp.path]);
        expect(r.code, exp.path).toBe(0);
        const target = exp.kind === 'hardlink' ? loadListing(which).find((x) => x.path === '/' + exp.hardlink_target!.replace(/\0$/, ''))! : exp;
        expect(sha(r.stdout), exp.path).toBe(target.sha256);
      }
    }
    const d = await run(['cat', refOf(split.path), 'root.pxar', '/links']);
    expect(d.code).not.toBe(0);
    expect(d.stderr).toMatch(/directory, not a regular file/);
  });

  it('restore writes the whole split archive and prints a summary', async () => {
    const t = await dir({ unsafeCleanup: true });
    temps.push(t);
    const target = join(t.path, 'restored');
    const r = await run(['restore', ...(isRoot ? ['--device-nodes'] : []), refOf(split.path), 'root.pxar', target]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const files = loadListing('v2').filter((e) => e.kind === 'file').length;
    expect(r.stdout.toString()).toMatch(new RegExp(`^restored ${files} files`));
    if (isRoot) compareTree(target, 'v2', t.path);
    else expect(readdirSync(target).length).toBeGreaterThan(5);
  });

  it('restore creates no device nodes unless asked (--device-nodes, root only)', async () => {
    const t = await dir({ unsafeCleanup: true });
    temps.push(t);
    const devices = loadListing('v2').filter((e) => e.kind === 'chardev' || e.kind === 'blockdev');
    expect(devices.length).toBeGreaterThan(0);
    const target = join(t.path, 'restored');
    const r = await run(['restore', refOf(split.path), 'root.pxar', target]);
    expect(r.code).toBe(0);
    for (const d of devices) {
      expect(existsSync(join(target, d.path)), d.path).toBe(false);
      expect(r.stderr.toString()).toContain(`${d.path.slice(1)}: device node skipped (device nodes were not asked for)`);
    }
    expect(r.stdout.toString()).toContain(`${devices.length} skipped`);
    if (!isRoot) {
      const refused = await run(['restore', '--device-nodes', refOf(split.path), 'root.pxar', join(t.path, 'again')]);
      expect(refused.code).toBe(2);
      expect(refused.stderr.toString()).toMatch(/--device-nodes needs root/);
    }
  });

  it('restore --path restores one subtree; JSON summary', async () => {
    const t = await dir({ unsafeCleanup: true });
    temps.push(t);
    const r = await run([...key, '--output-format', 'json', 'restore', '--path', '/nested/a', refOf(encrypted.path), 'root.pxar', t.path]);
    expect(r.code).toBe(0);
    const s = JSON.parse(r.stdout.toString()) as { files: number; directories: number };
    const sub = loadListing('v1').filter((e) => e.path.startsWith('/nested/a/'));
    expect(s.files).toBe(sub.filter((e) => e.kind === 'file').length);
    expect(s.directories).toBe(1 + sub.filter((e) => e.kind === 'directory').length);
    const deep = sub.find((e) => e.path.endsWith('deep.txt'))!;
    expect(readFileSync(join(t.path, 'a', 'b', 'c', 'd', 'deep.txt')).toString('hex')).toBe(deep.content_hex);
  });
});
