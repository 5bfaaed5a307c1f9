/**
 * `pbsfs demo [DIR]`: builds (once) an encrypted demo datastore, mounts its snapshot through
 * `pbsfs mount` (a child process), shows a tree listing, one file and the mount statistics,
 * unmounts, and prints the commands to do the same by hand. Without FUSE it shows the same
 * things read directly from the snapshot.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readSync, readdirSync, readFileSync, lstatSync, readlinkSync, rmdirSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { PxarSequentialDecoder } from '../../pxar/sequential.js';
import { loadKeyFile } from '../../crypto/key-config.js';
import { childProcessEnv } from '../../crypto/passphrase.js';
import { Snapshot } from '../../snapshot/snapshot.js';
import { LocalDatastore } from '../../store/local-datastore.js';
import { parseSnapshotRef } from '../../store/backup-ref.js';
import { formatBytes } from '../../util/bytes.js';
import { DEMO_IMAGE_NAME, defaultDemoDir, ensureDemo, type DemoInfo } from '../../writer/demo-data.js';
import { action } from '../context.js';

const MAX_TREE_LINES = 60;

function shellQuote(s: string): string {
  return /^[A-Za-z0-9_./:@=-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** `tree`-like listing of a directory on disk (the mount), depth and length limited. */
function listTree(root: string, maxDepth = 7): string[] {
  const lines: string[] = [];
  const walk = (dir: string, prefix: string, depth: number): void => {
    let names: string[];
    try {
      names = readdirSync(dir).sort();
    } catch (e) {
      lines.push(`${prefix}(cannot list: ${(e as Error).message})`);
      return;
    }
    names.forEach((n, i) => {
      if (lines.length >= MAX_TREE_LINES) return;
      const last = i === names.length - 1;
      const p = join(dir, n);
      const st = lstatSync(p);
      let label = n;
      if (st.isSymbolicLink()) label += ` -> ${readlinkSync(p)}`;
      else if (st.isDirectory()) label += '/';
      else label += `  (${formatBytes(st.size)})`;
      lines.push(`${prefix}${last ? '└── ' : '├── '}${label}`);
      if (st.isDirectory() && depth < maxDepth) walk(p, prefix + (last ? '    ' : '│   '), depth + 1);
    });
  };
  walk(root, '', 1);
  if (lines.length >= MAX_TREE_LINES) lines.push('…');
  return lines;
}

/** First path named `name` under `root` (breadth first). */
function findFile(root: string, name: string): string | undefined {
  const queue = [root];
  while (queue.length) {
    const d = queue.shift()!;
    let names: string[];
    try {
      names = readdirSync(d).sort();
    } catch {
      continue;
    }
    if (names.includes(name)) return join(d, name);
    for (const n of names) {
      const p = join(d, n);
      try {
        if (lstatSync(p).isDirectory()) queue.push(p);
      } catch {
        // ignore
      }
    }
  }
  return undefined;
}

function isMounted(mountpoint: string): boolean {
  try {
    const abs = resolve(mountpoint);
    return readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .some((l) => l.split(' ')[4] === abs);
  } catch {
    return false;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function cliArgs(): string[] {
  // this very CLI, the same way it was started
  return [...process.execArgv, process.argv[1]!];
}

async function mountAndShow(demo: DemoInfo, out: (s: string) => void): Promise<boolean> {
  const mp = mkdtempSync(join(tmpdir(), 'pbsfs-demo-mnt-'));
  // the mount child needs the (public) demo passphrase; nothing else of ours
  const env = { ...childProcessEnv(), PBS_ENCRYPTION_PASSWORD: demo.passphrase };
  let child: ChildProcess | undefined;
  let stderr = '';
  try {
    child = spawn(process.execPath, [...cliArgs(), '--repository', demo.repository, '--keyfile', demo.keyfile, 'mount', demo.snapshot, mp], {
      env,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((r) => child!.on('exit', (code) => r(code)));
    let ok = false;
    for (let i = 0; i < 300 && !ok; i++) {
      if (isMounted(mp)) ok = true;
      else if (child.exitCode !== null) break;
      else await sleep(100);
    }
    if (!ok) {
      out(`(mounting failed${stderr.trim() ? `: ${stderr.trim().split('\n')[0]}` : ''}; showing the snapshot read directly instead)`);
      child.kill('SIGTERM');
      return false;
    }
    out(`mounted ${demo.snapshot} at ${mp}\n`);
    out(`$ tree ${mp}`);
    out(listTree(mp).join('\n'));
    const sample = findFile(mp, demo.sampleFile);
    if (sample !== undefined) {
      out(`\n$ cat ${sample}`);
      out(readFileSync(sample, 'utf8').trimEnd());
    }
    const image = findFile(mp, `${DEMO_IMAGE_NAME}.img`);
    if (image !== undefined) {
      out(`\n$ head -c 2048 ${image}   (random access into the encrypted disk image)`);
      out(describeImage(image));
    }
    const stats = spawnSync('getfattr', ['--only-values', '-n', 'user.pbsfs.stats', mp], { encoding: 'utf8', env: childProcessEnv() });
    out('\nmount statistics (getfattr -n user.pbsfs.stats on the mount):');
    out(stats.status === 0 && stats.stdout.trim() !== '' ? formatStats(stats.stdout) : statsFromWalk(mp));
    const um = spawnSync(process.execPath, [...cliArgs(), 'umount', mp], { stdio: 'ignore', env: childProcessEnv() });
    if (um.status !== 0 && isMounted(mp)) spawnSync('umount', [mp], { stdio: 'ignore', env: childProcessEnv() });
    const code = await Promise.race([exited, sleep(10_000).then(() => 'timeout' as const)]);
    if (code === 'timeout') child.kill('SIGTERM');
    out(`\nunmounted ${mp}`);
    return true;
  } finally {
    if (child && child.exitCode === null && !isMounted(mp)) child.kill('SIGTERM');
    try {
      if (!isMounted(mp) && existsSync(mp)) rmdirSync(mp);
    } catch {
      // leave it
    }
  }
}

/** What the first 2 KiB of the demo image say: an ext4 superblock (magic 0xEF53 at 1080). */
function describeImage(path: string): string {
  const fd = openSync(path, 'r');
  try {
    const b = Buffer.alloc(2048);
    const n = readSync(fd, b, 0, 2048, 0);
    if (n >= 1144 && b.readUInt16LE(1080) === 0xef53) {
      const label = b.subarray(1144, 1160).toString('latin1').replace(/\0.*$/s, '');
      const blocks = b.readUInt32LE(1028);
      const blockSize = 1024 << b.readUInt32LE(1048);
      return `  ext4 filesystem, label "${label}", ${blocks} blocks of ${blockSize} bytes`;
    }
    return `  ${JSON.stringify(b.subarray(0, 60).toString('latin1').replace(/[^\x20-\x7e]/g, '.'))}...`;
  } finally {
    closeSync(fd);
  }
}

/** The stats xattr (JSON) as aligned "name: value" lines. */
function formatStats(json: string): string {
  try {
    const flat: [string, unknown][] = [];
    const walk = (o: Record<string, unknown>, prefix: string): void => {
      for (const [k, v] of Object.entries(o)) {
        if (v !== null && typeof v === 'object') walk(v as Record<string, unknown>, `${prefix}${k}.`);
        else flat.push([prefix + k, v]);
      }
    };
    walk(JSON.parse(json) as Record<string, unknown>, '');
    const w = Math.max(...flat.map(([k]) => k.length));
    return flat.map(([k, v]) => `  ${k.padEnd(w)}  ${/bytes/i.test(k) && typeof v === 'number' ? formatBytes(v) : String(v)}`).join('\n');
  } catch {
    return json.trim();
  }
}

function statsFromWalk(root: string): string {
  let files = 0,
    dirs = 0,
    bytes = 0;
  const walk = (d: string): void => {
    for (const n of readdirSync(d)) {
      const st = lstatSync(join(d, n));
      if (st.isDirectory()) {
        dirs++;
        walk(join(d, n));
      } else {
        files++;
        bytes += st.size;
      }
    }
  };
  walk(root);
  return `  ${files} files, ${dirs} directories, ${formatBytes(bytes)}`;
}

/** Without FUSE: the same view, read with the library. */
async function showDirect(demo: DemoInfo, out: (s: string) => void): Promise<void> {
  const { crypt } = await loadKeyFile(demo.keyfile, async () => demo.passphrase);
  const snap = await Snapshot.open(await LocalDatastore.open(demo.repository), [], parseSnapshotRef(demo.snapshot), { crypt });
  const idx = await snap.openIndex('root.pxar.didx');
  const dec = await PxarSequentialDecoder.open(idx.readAt);
  out(`\n${demo.snapshot} root.pxar:`);
  let sample: Buffer | undefined;
  let n = 0;
  for await (const e of dec.entries()) {
    if (e.depth === 0) continue;
    const name = e.path.toString('utf8');
    if (n++ < MAX_TREE_LINES) {
      const extra = e.kind === 'symlink' ? ` -> ${e.symlinkTarget?.toString()}` : e.kind === 'file' ? `  (${formatBytes(e.size)})` : e.kind === 'hardlink' ? ` => ${e.hardlink?.target.toString()}` : e.kind === 'directory' ? '/' : '';
      out(`  ${name}${extra}`);
    }
    if (e.kind === 'file' && name === `/${demo.sampleFile}`) {
      const parts: Buffer[] = [];
      for await (const b of dec.stream(e)) parts.push(b);
      sample = Buffer.concat(parts);
    }
  }
  if (sample) {
    out(`\n/${demo.sampleFile}:`);
    out(sample.toString('utf8').trimEnd());
  }
  out('\nsnapshot files:');
  for (const f of snap.manifest.files) out(`  ${f.filename}  ${formatBytes(f.size)}  ${f.cryptMode}`);
}

export function register(program: Command): void {
  program
    .command('demo')
    .description('create (once) an encrypted demo datastore, mount its snapshot and show what is inside')
    .argument('[dir]', 'where to keep the demo (default: $XDG_CACHE_HOME/pbsfs/demo or ~/.cache/pbsfs/demo)')
    .option('--rebuild', 'create the demo datastore again even if a complete one exists', false)
    .option('--no-mount', 'do not mount; show the snapshot read directly')
    .action(
      action(async (dirArg: string | undefined, opts: { rebuild: boolean; mount: boolean }) => {
        // `pbsfs demo | head` closes the pipe early: stop quietly
        process.stdout.on('error', (e: NodeJS.ErrnoException) => {
          if (e.code === 'EPIPE') process.exit(0);
        });
        const out = (s: string): void => void process.stdout.write(s + '\n');
        const dir = resolve(dirArg ?? defaultDemoDir());
        const demo = await ensureDemo(dir, (l) => out(`demo: ${l}`), opts.rebuild);
        out(demo.created ? `demo: created ${dir}` : `demo: reusing the demo datastore in ${dir}`);
        out(`  datastore:  ${demo.repository}`);
        out(`  key file:   ${demo.keyfile}`);
        out(`  passphrase: ${demo.passphrase}   (a fixed demo passphrase: never use it for real data)`);
        out(`  snapshot:   ${demo.snapshot}  (files, symlinks, a hardlink, and ${DEMO_IMAGE_NAME}.img: ${demo.imageKind === 'ext4' ? 'an ext4 image' : 'a plain image'})`);
        if (demo.backup) {
          const c = demo.backup.chunks;
          out(`  written:    ${c.chunks} chunks (${formatBytes(c.bytes)} of data, ${formatBytes(c.storedBytes)} stored compressed and encrypted)`);
        }
        out('');
        const mounted = opts.mount ? await mountAndShow(demo, out) : false;
        if (!mounted) await showDirect(demo, out);
        const q = shellQuote;
        out('\nTo do this by hand:');
        out(`  export PBS_ENCRYPTION_PASSWORD=${q(demo.passphrase)}`);
        out(`  pbsfs --repository ${q(demo.repository)} --keyfile ${q(demo.keyfile)} snapshots`);
        out(`  mkdir -p /tmp/pbsfs-demo && pbsfs --repository ${q(demo.repository)} --keyfile ${q(demo.keyfile)} mount ${demo.snapshot} /tmp/pbsfs-demo`);
        out('  ls -la /tmp/pbsfs-demo/root.pxar');
        if (demo.imageKind === 'ext4') out('  mount -o ro,loop /tmp/pbsfs-demo/disk.img /mnt && ls /mnt && umount /mnt   # the ext4 image, through pbsfs');
        out(`  pbsfs umount /tmp/pbsfs-demo`);
        out(`  # or just one archive: ... mount ${demo.snapshot} root.pxar /tmp/pbsfs-demo`);
      }),
    );
}
