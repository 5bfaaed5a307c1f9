/**
 * End-to-end mount behaviour through the CLI: disk images (hash, random reads against
 * `pbsfs cat`, 16 parallel readers), laziness (counters in user.pbsfs.stats), corruption (EIO
 * for that range only, one log line), EROFS, and the mount lifecycle (daemon readiness, errors,
 * busy and stale unmounts, SIGTERM, --stats).
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { execFile, spawn } from 'node:child_process';
import { promises as fsp, readFileSync, cpSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { dir } from 'tmp-promise';
import { cliPath, datastoreDir, keysDir, vectorsDir } from '../helpers/paths.js';
import { expectedSnapshots, type ExpectedSnapshot } from '../helpers/datastore-expected.js';
import { MountTracker, cliEnv, runCli } from '../helpers/mount-cli.js';
import { containing, waitFor } from '../helpers/poll.js';

const run = promisify(execFile);
const keyfile = join(keysDir, 'key-scrypt.json');
const base = ['--repository', datastoreDir, '--keyfile', keyfile];

const expected = { snapshots: expectedSnapshots() };
/** The disk image of a VM snapshot vector, with the fields every image vector has. */
function imageVector(s: ExpectedSnapshot) {
  const f = s.files['drive-scsi0.img.fidx']!;
  return { image_sha256: f.image_sha256!, image_size: f.image_size!, chunk_size: f.chunk_size!, chunks: f.chunks! };
}
const vmSnapshots = expected.snapshots.filter((s) => s.files['drive-scsi0.img.fidx'] !== undefined);
const plainVm = vmSnapshots.find((s) => s.crypt_mode === 'none') ?? vmSnapshots[0]!;
const encVm = vmSnapshots.find((s) => s.crypt_mode === 'encrypt') ?? vmSnapshots[0]!;

const tracker = new MountTracker();
afterEach(() => tracker.cleanup());
afterAll(() => tracker.cleanup());

async function mount(args: string[], env = cliEnv()): Promise<string> {
  const mp = tracker.mountpoint();
  const r = await runCli([...args.slice(0, -1), args[args.length - 1]!.replace('MP', mp)], env);
  expect(r.code, r.stderr).toBe(0);
  return mp;
}

async function readRange(path: string, offset: number, length: number): Promise<Buffer> {
  const fh = await fsp.open(path, 'r');
  try {
    const buf = Buffer.alloc(length);
    let got = 0;
    while (got < length) {
      const { bytesRead } = await fh.read(buf, got, length - got, offset + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return buf.subarray(0, got);
  } finally {
    await fh.close();
  }
}

async function stats(mp: string): Promise<{ chunksFetched: number; bytesDecoded: number; vfs: Record<string, number> }> {
  const { stdout } = await run('getfattr', ['--only-values', '-n', 'user.pbsfs.stats', '--absolute-names', mp]);
  return JSON.parse(stdout) as { chunksFetched: number; bytesDecoded: number; vfs: Record<string, number> };
}

/** Deterministic pseudo-random ranges, many straddling chunk boundaries. */
function ranges(size: number, chunk: number, n: number, seed: number): [number, number][] {
  let x = seed;
  const rnd = (m: number): number => {
    x = (x * 1103515245 + 12345) % 2147483648;
    return x % m;
  };
  const out: [number, number][] = [];
  for (let i = 0; i < n; i++) {
    const boundary = chunk * (1 + rnd(Math.max(1, Math.floor(size / chunk) - 1)));
    const off = i % 2 === 0 ? Math.max(0, boundary - 1 - rnd(70000)) : rnd(size);
    out.push([off, 1 + rnd(300000)]);
  }
  return out;
}

describe('disk images through the kernel', () => {
  it('have the expected size and SHA-256, and random reads equal `pbsfs cat`', async () => {
    const v = imageVector(encVm);
    const snapArg = encVm.path;
    const mp = await mount([...base, 'mount', snapArg, 'MP']);
    const img = join(mp, 'drive-scsi0.img');
    expect(statSync(img).size).toBe(v.image_size);
    const data = await fsp.readFile(img);
    expect(createHash('sha256').update(data).digest('hex')).toBe(v.image_sha256);
    const cat = await runCli([...base, 'cat', snapArg, 'drive-scsi0.img']);
    expect(cat.code, cat.stderr).toBe(0);
    for (const [off, len] of ranges(v.image_size, v.chunk_size, 40, 7)) {
      const got = await readRange(img, off, len);
      expect(got.equals(cat.stdout.subarray(off, off + len)), `range ${off}+${len}`).toBe(true);
    }
    // The blob next to it is decoded.
    const conf = await fsp.readFile(join(mp, 'qemu-server.conf'), 'utf8');
    expect(conf).toBe(encVm.files['qemu-server.conf.blob']!.plaintext_utf8);
  });

  it('serve 16 parallel random-range readers correctly', async () => {
    const v = imageVector(plainVm);
    const mp = await mount(['--repository', datastoreDir, 'mount', plainVm.path, 'drive-scsi0.img', 'MP']);
    const img = join(mp, 'drive-scsi0.img');
    expect((await fsp.readdir(mp)).sort()).toEqual(['drive-scsi0.img', 'drive-scsi0.img.d']);
    const ref = (await runCli(['--repository', datastoreDir, 'cat', plainVm.path, 'drive-scsi0.img'])).stdout;
    expect(createHash('sha256').update(ref).digest('hex')).toBe(v.image_sha256);
    const readers = Array.from({ length: 16 }, async (_, r) => {
      const fh = await fsp.open(img, 'r');
      try {
        for (const [off, len] of ranges(v.image_size, v.chunk_size, 12, 100 + r)) {
          const buf = Buffer.alloc(len);
          const { bytesRead } = await fh.read(buf, 0, len, off);
          expect(buf.subarray(0, bytesRead).equals(ref.subarray(off, off + bytesRead))).toBe(true);
          expect(bytesRead).toBe(Math.min(len, v.image_size - off));
        }
      } finally {
        await fh.close();
      }
    });
    await Promise.all(readers);
  });
});

describe('laziness', () => {
  it('reading one small file fetches only the chunks on its path', async () => {
    // The archive cut into the most chunks (64 KiB average in the public set); the hardlink
    // scan (which reads all metadata) is off. The file: the deepest small one in the listing.
    const s = expected.snapshots
      .filter((x) => x.files['root.pxar.didx'] !== undefined && !x.namespace)
      .sort((a, b) => (b.files['root.pxar.didx']!.chunks as unknown[]).length - (a.files['root.pxar.didx']!.chunks as unknown[]).length)[0]!;
    const total = (s.files['root.pxar.didx']!.chunks as unknown[]).length;
    const listing = JSON.parse(readFileSync(join(vectorsDir, 'pxar', 'archive-v1.listing.json'), 'utf8')) as {
      kind: string;
      path_hex: string;
      size?: number;
    }[];
    const small = listing
      .filter((e) => e.kind === 'file' && (e.size ?? 0) > 0 && (e.size ?? 0) <= 4096)
      .map((e) => ({ path: Buffer.from(e.path_hex, 'hex'), size: e.size! }))
      .sort((a, b) => b.path.filter((c) => c === 0x2f).length - a.path.filter((c) => c === 0x2f).length)[0]!;
    const mp = await mount([...base, 'mount', s.path, 'root.pxar', 'MP'], cliEnv({ PBSFS_NLINK_SCAN: 'off' }));
    const before = await stats(mp);
    expect((await fsp.readFile(Buffer.concat([Buffer.from(mp), small.path]))).length).toBe(small.size);
    const after = await stats(mp);
    const fetched = after.chunksFetched - before.chunksFetched;
    // Mounting opens the archive (its first chunk, and the last ones for the root's goodbye
    // table) and lists nothing: ready time must not grow with the root's fan-out.
    expect(before.chunksFetched).toBeGreaterThan(0);
    expect(before.chunksFetched).toBeLessThanOrEqual(3);
    // The directories on the path (goodbye tables near their ends) and the file's contents.
    expect(fetched).toBeLessThanOrEqual(8);
    expect(after.chunksFetched).toBeLessThan(total / 3);
  });
});

describe('directory walks', () => {
  it('find over an archive gets the next directories listed ahead, and lists every entry once', async () => {
    const s = expected.snapshots.find((x) => x.files['root.mpxar.didx'] !== undefined && x.crypt_mode === 'none' && !x.namespace)!;
    const listing = JSON.parse(readFileSync(join(vectorsDir, 'pxar', 'archive-v2.listing.json'), 'utf8')) as { kind: string; path_hex: string }[];
    const dirs = listing.filter((e) => e.kind === 'directory').length;
    const mp = await mount(['--repository', datastoreDir, 'mount', s.path, 'root.pxar', 'MP']);
    const { stdout } = await run('find', [mp, '-printf', '%P\\0'], { encoding: 'buffer', maxBuffer: 1 << 24 });
    const found = (stdout as unknown as Buffer).toString('latin1').split('\0').filter((p) => p.length > 0);
    expect(found.length).toBe(listing.filter((e) => e.kind !== 'version').length - 1);
    expect(new Set(found).size).toBe(found.length);
    const v = (await stats(mp)).vfs;
    // Every directory but the root can be predicted by a depth-first walk; each prepared listing
    // was used (a walk takes what was prepared for it).
    expect(v.listingsReadAhead).toBeGreaterThanOrEqual(Math.floor((dirs - 1) / 2));
    expect(v.listingsReadAhead).toBe(v.listingsPrepared);
    // Kernels that open directories without asking (zero-message opendir, Linux 5.1+) send no
    // RELEASEDIR: the listings read to their end must not stay behind.
    expect(v.openDirs).toBe(0);
  });
});

describe('corruption', () => {
  it('a flipped byte in one chunk gives EIO for that range only, and one log line', async () => {
    const tmp = await dir({ unsafeCleanup: true });
    try {
      const store = join(tmp.path, 'store');
      cpSync(datastoreDir, store, { recursive: true });
      const v = imageVector(plainVm);
      const bad = v.chunks.find((c) => !c.all_zero && c.start > 0)!;
      const good = v.chunks.find((c) => c !== bad && !c.all_zero)!;
      const chunkFile = join(store, '.chunks', bad.digest.slice(0, 4), bad.digest);
      const raw = readFileSync(chunkFile);
      raw[Math.floor(raw.length / 2)]! ^= 0x40;
      writeFileSync(chunkFile, raw);
      const mp = tracker.mountpoint();
      const { stderr } = await tracker.foreground(['--repository', store, 'mount', '--foreground', plainVm.path, mp]);
      const img = join(mp, 'drive-scsi0.img');
      const code = await readRange(img, bad.start + 10, 100).then(
        () => 'OK',
        (e: NodeJS.ErrnoException) => e.code,
      );
      expect(code).toBe('EIO');
      expect((await readRange(img, good.start, 4096)).length).toBe(4096);
      expect((await fsp.readFile(join(mp, 'qemu-server.conf'), 'utf8')).length).toBeGreaterThan(0);
      await waitFor(containing(stderr, 'read error'), 'the read error on stderr');
      const lines = stderr()
        .split('\n')
        .filter((l) => l.includes('read error'));
      expect(lines.length).toBeGreaterThanOrEqual(1);
      expect(lines[0]).toContain('/drive-scsi0.img');
      expect(lines[0]).toContain(bad.digest);
    } finally {
      tracker.cleanup();
      await tmp.cleanup();
    }
  });
});

describe('daemon log file', () => {
  it('--log-file receives the read-error line of a daemonized mount', async () => {
    const tmp = await dir({ unsafeCleanup: true });
    try {
      const store = join(tmp.path, 'store');
      cpSync(datastoreDir, store, { recursive: true });
      const v = imageVector(plainVm);
      const bad = v.chunks.find((c) => !c.all_zero)!;
      const chunkFile = join(store, '.chunks', bad.digest.slice(0, 4), bad.digest);
      const raw = readFileSync(chunkFile);
      raw[Math.floor(raw.length / 2)]! ^= 0x01;
      writeFileSync(chunkFile, raw);
      const log = join(tmp.path, 'mount.log');
      const mp = await mount(['--repository', store, 'mount', '--log-file', log, plainVm.path, 'MP']);
      const code = await readRange(join(mp, 'drive-scsi0.img'), bad.start, 4096).then(
        () => 'OK',
        (e: NodeJS.ErrnoException) => e.code,
      );
      expect(code).toBe('EIO');
      await waitFor(containing(() => readFileSync(log, 'utf8'), bad.digest), 'the log line naming the chunk');
      const text = readFileSync(log, 'utf8');
      expect(text).toContain('/drive-scsi0.img');
      expect(text).toContain(bad.digest);
      expect(statSync(log).mode & 0o777).toBe(0o600);
    } finally {
      tracker.cleanup();
      await tmp.cleanup();
    }
  });
});

describe('mount lifecycle', () => {
  it('refuses writes with EROFS; --uid/--gid/--allow-other apply', async () => {
    const mp = await mount(['--repository', datastoreDir, 'mount', '--uid', '1234', '--gid', '5678', '--allow-other', plainVm.path, 'MP']);
    const st = statSync(join(mp, 'drive-scsi0.img'));
    expect([st.uid, st.gid]).toEqual([1234, 5678]);
    const line = readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .find((l) => l.includes(` ${mp} `))!;
    expect(line).toMatch(/ ro,/);
    expect(line).toMatch(/allow_other/);
    expect(line).toMatch(/default_permissions/);
    const code = async (f: () => Promise<unknown>): Promise<string> =>
      f().then(
        () => 'OK',
        (e: NodeJS.ErrnoException) => e.code ?? '?',
      );
    expect(await code(() => fsp.writeFile(join(mp, 'drive-scsi0.img'), 'x'))).toBe('EROFS');
    expect(await code(() => fsp.writeFile(join(mp, 'new-file'), 'x'))).toBe('EROFS');
    expect(await code(() => fsp.mkdir(join(mp, 'dir')))).toBe('EROFS');
    expect(await code(() => fsp.unlink(join(mp, 'qemu-server.conf')))).toBe('EROFS');
    expect(await code(() => fsp.rename(join(mp, 'qemu-server.conf'), join(mp, 'x')))).toBe('EROFS');
    expect(await code(() => fsp.chmod(join(mp, 'qemu-server.conf'), 0o777))).toBe('EROFS');
  });

  it('gives clear errors for bad mount points and bad snapshots, and leaves nothing mounted', async () => {
    const tmp = await dir({ unsafeCleanup: true });
    try {
      const missing = await runCli(['--repository', datastoreDir, 'mount', join(tmp.path, 'nope')]);
      expect(missing.code).not.toBe(0);
      expect(missing.stderr).toMatch(/mount point does not exist/);
      const file = join(tmp.path, 'file');
      writeFileSync(file, 'x');
      const notDir = await runCli(['--repository', datastoreDir, 'mount', file]);
      expect(notDir.code).not.toBe(0);
      expect(notDir.stderr).toMatch(/not a directory/);
      const mp = join(tmp.path, 'mp');
      mkdirSync(mp);
      const noArchive = await runCli([...base, 'mount', plainVm.path, 'nope.img', mp]);
      expect(noArchive.code).not.toBe(0);
      expect(noArchive.stderr).toMatch(/no archive "nope.img"/);
      const wrongPass = await runCli([...base, 'mount', encVm.path, mp], cliEnv({ PBS_ENCRYPTION_PASSWORD: 'wrong passphrase' }));
      expect(wrongPass.code).not.toBe(0);
      expect(wrongPass.stderr).toMatch(/passphrase|password/i);
      expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(mp);
    } finally {
      await tmp.cleanup();
    }
  });

  it('refuses a second mount on the same point', async () => {
    const mp = await mount(['--repository', datastoreDir, 'mount', plainVm.path, 'MP']);
    const again = await runCli(['--repository', datastoreDir, 'mount', plainVm.path, mp]);
    expect(again.code).not.toBe(0);
    expect(again.stderr).toMatch(/already a mount/);
  });

  it('umount: busy while a file is open (clear message), works after', async () => {
    const mp = await mount(['--repository', datastoreDir, 'mount', plainVm.path, 'MP']);
    const fh = await fsp.open(join(mp, 'drive-scsi0.img'), 'r');
    let busy;
    try {
      await fh.read(Buffer.alloc(10), 0, 10, 0);
      busy = await runCli(['umount', mp]);
    } finally {
      await fh.close();
    }
    expect(busy.code).not.toBe(0);
    expect(busy.stderr).toMatch(/busy/);
    const ok = await runCli(['umount', mp]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(mp);
    expect(await fsp.readdir(mp)).toEqual([]);
  });

  it('umount cleans up a stale mount left by a killed process', async () => {
    const mp = tracker.mountpoint();
    const { child } = await tracker.foreground(['--repository', datastoreDir, 'mount', '--foreground', plainVm.path, mp]);
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    const stale = await fsp.stat(mp).then(
      () => 'OK',
      (e: NodeJS.ErrnoException) => e.code,
    );
    expect(stale).toBe('ENOTCONN');
    const r = await runCli(['umount', mp]);
    expect(r.code, r.stderr).toBe(0);
    expect((await fsp.stat(mp)).isDirectory()).toBe(true);
  });

  it('SIGTERM unmounts cleanly and --stats prints the counters', async () => {
    const mp = tracker.mountpoint();
    const { child, stderr } = await tracker.foreground(['--repository', datastoreDir, 'mount', '--foreground', '--stats', plainVm.path, mp]);
    await fsp.readFile(join(mp, 'qemu-server.conf'));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(mp);
    expect(stderr()).toMatch(/chunksFetched: \d+/);
    expect(stderr()).toMatch(/vfs\.opens: 1/);
  });

  it('SIGTERM sent the moment the mount appears (before it reports ready) still unmounts', async () => {
    // The kernel shows the mount, and answers on it, a moment before the process reports it is
    // mounted; a SIGTERM in between once killed the process outright and left a stale mount.
    for (let round = 0; round < 6; round++) {
      const mp = tracker.mountpoint();
      const child = spawn(process.execPath, [cliPath, '--repository', datastoreDir, 'mount', '--foreground', plainVm.path, mp], {
        env: cliEnv(),
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let err = '';
      child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
      const exited = new Promise<string>((r) => child.once('exit', (code, signal) => r(`${code}/${signal}`)));
      const inMountinfo = (): boolean => readFileSync('/proc/self/mountinfo', 'utf8').includes(` ${mp} `);
      const deadline = Date.now() + 30_000;
      while (!inMountinfo() && child.exitCode === null && Date.now() < deadline) await new Promise((r) => setImmediate(r));
      expect(inMountinfo(), err).toBe(true);
      child.kill('SIGTERM');
      expect(await exited, err).toBe('0/null');
      expect(inMountinfo(), `round ${round}: stale mount`).toBe(false);
    }
  });
});

describe('kernel read-ahead', () => {
  // Chunks are MiBs: with the kernel's default 128 KiB window a sequential reader waits for
  // every 128 KiB. The window must be raised after the kernel took the INIT reply (which resets
  // it), in daemon and in foreground mode alike.
  const windowOf = (mp: string): string => {
    const line = readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .find((l) => l.split(' ')[4] === mp);
    expect(line, `${mp} in mountinfo`).toBeDefined();
    return readFileSync(`/sys/class/bdi/${line!.split(' ')[2]}/read_ahead_kb`, 'utf8').trim();
  };

  it('is 4 MiB on a daemon mount', async () => {
    const mp = await mount([...base, 'mount', encVm.path, 'drive-scsi0.img', 'MP']);
    expect(windowOf(mp)).toBe('4096');
  });

  it('is 4 MiB on a foreground mount', async () => {
    const mp = tracker.mountpoint();
    await tracker.foreground([...base, 'mount', '--foreground', encVm.path, 'drive-scsi0.img', mp]);
    expect(windowOf(mp)).toBe('4096');
  });
});
