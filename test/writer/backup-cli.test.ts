/**
 * `pbsfs backup` end to end (the built CLI): round trips through our readers, images of odd
 * sizes, every crypt mode, split archives, and the rule that existing chunks and snapshots are
 * never modified or removed.
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstatSync, mkdirSync, readdirSync, readFileSync, writeFileSync, symlinkSync, linkSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { withDir } from 'tmp-promise';
import { loadKeyFile } from '../../src/crypto/key-config.js';
import { Snapshot } from '../../src/snapshot/snapshot.js';
import { LocalDatastore } from '../../src/store/local-datastore.js';
import { parseSnapshotRef } from '../../src/store/backup-ref.js';
import { cliPath, keysDir } from '../helpers/paths.js';
import { modelFromFs, modelFromSnapshot } from './tree-model.js';
import { haveGetfattr } from '../../src/writer/fs-attrs.js';
import { CatalogReader } from '../../src/catalog/catalog-reader.js';

const KEYFILE = join(keysDir, 'key-none.json');

function pbsfs(args: string[]): { status: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [cliPath, ...args], { encoding: 'utf8', env: { ...process.env, CI: 'true' } });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

function makeTree(src: string): void {
  mkdirSync(join(src, 'dir', 'deep'), { recursive: true });
  writeFileSync(join(src, 'empty'), '');
  writeFileSync(join(src, 'dir', 'text.txt'), 'hello world\n'.repeat(5000));
  writeFileSync(join(src, 'dir', 'deep', 'rand.bin'), createHash('sha512').update('x').digest().toString('hex').repeat(3000));
  symlinkSync('../empty', join(src, 'dir', 'link'));
  linkSync(join(src, 'dir', 'text.txt'), join(src, 'hard'));
  writeFileSync(join(src, Buffer.from([0x62, 0x61, 0x64, 0xff]).toString('latin1')), 'latin1 name');
}

/** Every file under `root` with its content hash and mtime: proves nothing existing changed. */
function fileStates(root: string): Map<string, string> {
  const m = new Map<string, string>();
  const walk = (d: string): void => {
    for (const n of readdirSync(d)) {
      const p = join(d, n);
      const st = lstatSync(p, { bigint: true });
      if (st.isDirectory()) walk(p);
      else m.set(p, `${st.mtimeNs}:${st.size}:${createHash('sha256').update(readFileSync(p)).digest('hex')}`);
    }
  };
  walk(root);
  return m;
}

describe('pbsfs backup (CLI)', () => {
  for (const [mode, split] of [['encrypt', false], ['sign-only', true], ['none', false], ['encrypt', true]] as const) {
    it(`backs up a directory, crypt mode ${mode}${split ? ', split' : ''}, and reads back identically`, async () => {
      await withDir(
        async ({ path: tmp }) => {
          const src = join(tmp, 'src');
          mkdirSync(src);
          makeTree(src);
          const repo = join(tmp, 'store');
          const args = ['--repository', repo, '--output-format', 'json', 'backup', src, '--backup-id', 'cli', '--backup-time', '2024-06-05T10:20:30Z', '--lazy-chunk-dirs', '--chunk-size', '64'];
          if (mode !== 'none') args.unshift('--keyfile', KEYFILE);
          if (mode !== 'none') args.push('--crypt-mode', mode);
          if (split) args.push('--split');
          const r = pbsfs(args);
          expect(r.stderr).toBe('');
          expect(r.status).toBe(0);
          const out = JSON.parse(r.stdout) as { snapshot: string; files: { filename: string; 'crypt-mode': string }[] };
          expect(out.snapshot).toBe('host/cli/2024-06-05T10:20:30Z');
          expect(out.files.map((f) => f.filename)).toEqual(split ? ['root.mpxar.didx', 'root.ppxar.didx'] : ['root.pxar.didx', 'catalog.pcat1.didx']);
          expect(out.files.every((f) => f['crypt-mode'] === mode)).toBe(true);
          const key = (await loadKeyFile(KEYFILE)).crypt;
          const got = await modelFromSnapshot(repo, out.snapshot, mode === 'encrypt' ? key : undefined);
          expect(got).toEqual(modelFromFs(src, haveGetfattr()));
          if (!split) {
            // the catalog lists the same entries (kind letters, sizes) under root.pxar.didx
            const snap = await Snapshot.open(await LocalDatastore.open(repo), [], parseSnapshotRef(out.snapshot), mode === 'encrypt' ? { crypt: key } : {});
            const cat = await CatalogReader.open((await snap.openIndex('catalog.pcat1.didx')).readAt);
            const listed: string[] = [];
            for await (const it of cat.walk()) {
              const size = it.entry.type === 'f' ? ` ${it.entry.size}` : '';
              listed.push(`${it.entry.type} ${it.path.toString('hex')}${size}`);
            }
            const letter: Record<string, string> = { directory: 'd', file: 'f', symlink: 'l', hardlink: 'h', fifo: 'p', socket: 's', chardev: 'c', blockdev: 'b' };
            const prefix = Buffer.from('root.pxar.didx/').toString('hex');
            const wantCat = [
              `d ${Buffer.from('root.pxar.didx').toString('hex')}`,
              ...got.slice(1).map((e) => `${letter[e.kind]} ${prefix}${e.path}${e.kind === 'file' ? ` ${e.size}` : ''}`),
            ];
            expect(listed.sort()).toEqual(wantCat.sort());
          }
          // our verify agrees
          const v = pbsfs(['--repository', repo, ...(mode !== 'none' ? ['--keyfile', KEYFILE] : []), 'verify']);
          expect(v.status).toBe(0);
        },
        { unsafeCleanup: true },
      );
    });
  }

  it('stores images of odd sizes (fixed chunks, short last chunk, zero chunks deduplicated) and blobs', async () => {
    await withDir(
      async ({ path: tmp }) => {
        const repo = join(tmp, 'store');
        const sizes = [1, 65535, 65536, 65537, 3 * 65536 + 17];
        const images: string[] = [];
        const data = new Map<string, Buffer>();
        sizes.forEach((s, i) => {
          const b = Buffer.alloc(s);
          for (let k = 0; k < s; k += 997) b[k] = (k * 31 + i) & 0xff;
          const p = join(tmp, `img${i}`);
          writeFileSync(p, b);
          images.push('--image', `disk${i}=${p}`);
          data.set(`disk${i}.img.fidx`, b);
        });
        const zeros = Buffer.alloc(5 * 65536);
        writeFileSync(join(tmp, 'zeros'), zeros);
        images.push('--image', `zeros=${join(tmp, 'zeros')}`);
        data.set('zeros.img.fidx', zeros);
        writeFileSync(join(tmp, 'vm.conf'), 'memory: 2048\n');
        const r = pbsfs(['--repository', repo, '--keyfile', KEYFILE, 'backup', '--backup-type', 'vm', '--backup-id', '100', '--backup-time', '1717582830', '--lazy-chunk-dirs', '--chunk-size', '64', ...images, '--blob', `qemu-server.conf=${join(tmp, 'vm.conf')}`]);
        expect(r.stderr).toBe('');
        expect(r.status).toBe(0);
        const key = (await loadKeyFile(KEYFILE)).crypt;
        const snap = await Snapshot.open(await LocalDatastore.open(repo), [], parseSnapshotRef('vm/100/2024-06-05T10:20:30Z'), { crypt: key });
        expect(snap.manifest.files.map((f) => f.filename)).toEqual(['qemu-server.conf.blob', ...[...data.keys()]]);
        for (const [name, want] of data) {
          const o = await snap.openIndex(name);
          expect(o.index.size).toBe(want.length);
          expect(o.index.count).toBe(Math.ceil(want.length / 65536));
          expect((await o.readAt.readAt(0, want.length)).equals(want)).toBe(true);
        }
        const z = (await snap.openIndex('zeros.img.fidx')).index;
        expect(new Set([0, 1, 2, 3, 4].map((i) => z.digest(i).toString('hex'))).size).toBe(1);
        expect((await snap.readBlob('qemu-server.conf.blob')).toString()).toBe('memory: 2048\n');
      },
      { unsafeCleanup: true },
    );
  });

  it('never modifies or deletes existing chunks or snapshots', async () => {
    await withDir(
      async ({ path: tmp }) => {
        const src = join(tmp, 'src');
        mkdirSync(src);
        makeTree(src);
        const repo = join(tmp, 'store');
        const base = ['--repository', repo, '--keyfile', KEYFILE, 'backup', src, '--backup-id', 'x', '--lazy-chunk-dirs', '--chunk-size', '64'];
        expect(pbsfs([...base, '--backup-time', '1700000000']).status).toBe(0);
        // plant a foreign file under the name of a chunk the next run will produce again
        const chunkDirs = readdirSync(join(repo, '.chunks'));
        const someDir = join(repo, '.chunks', chunkDirs[0]!);
        const someChunk = join(someDir, readdirSync(someDir)[0]!);
        writeFileSync(someChunk, 'not really a chunk');
        const before = fileStates(repo);
        writeFileSync(join(src, 'new-file'), 'more data');
        const r2 = pbsfs([...base, '--backup-time', '1700000100']);
        expect(r2.status).toBe(0);
        const after = fileStates(repo);
        for (const [p, s] of before) expect(after.get(p)).toBe(s);
        expect(after.size).toBeGreaterThan(before.size);
        // the same snapshot again: refused, nothing changed
        const r3 = pbsfs([...base, '--backup-time', '1700000100']);
        expect(r3.status).toBe(2);
        expect(r3.stderr).toMatch(/already exists/);
        expect(r3.stderr.trim().split('\n')).toHaveLength(1);
        const again = fileStates(repo);
        expect([...again.entries()]).toEqual([...after.entries()]);
        // no leftover temp directories
        expect(readdirSync(join(repo, 'host', 'x')).sort()).toEqual(['2023-11-14T22:13:20Z', '2023-11-14T22:15:00Z', 'owner']);
      },
      { unsafeCleanup: true },
    );
  });

  it('reports bad input in one line with a usage exit code', async () => {
    await withDir(
      async ({ path: tmp }) => {
        const repo = join(tmp, 'store');
        const cases: [string[], RegExp][] = [
          [['--repository', repo, 'backup', join(tmp, 'missing')], /does not exist/],
          [['--repository', repo, 'backup', tmp, '--crypt-mode', 'sign-only'], /needs --keyfile/],
          [['--repository', repo, 'backup'], /nothing to back up/],
          [['--repository', repo, 'backup', tmp, '--chunk-size', '100'], /chunk size/],
          [['--repository', repo, 'backup', tmp, '--backup-id', 'bad/id'], /backup-id/],
          [['--repository', tmp, 'backup', keysDir], /neither empty nor a datastore/],
        ];
        mkdirSync(join(tmp, 'x'));
        for (const [args, re] of cases) {
          const r = pbsfs(args);
          expect(r.status, args.join(' ')).toBe(2);
          expect(r.stderr).toMatch(re);
          expect(r.stderr.trim().split('\n')).toHaveLength(1);
        }
        expect(existsSync(join(repo, 'host'))).toBe(false);
      },
      { unsafeCleanup: true },
    );
  });

  it('writes into a namespace, and a failing backup leaves no snapshot or temp directory behind', async () => {
    await withDir(
      async ({ path: tmp }) => {
        const src = join(tmp, 'src');
        mkdirSync(src);
        makeTree(src);
        const repo = join(tmp, 'store');
        const ok = pbsfs(['--repository', repo, '--ns', 'dev/sub', 'backup', src, '--backup-id', 'n', '--backup-time', '1700000000', '--lazy-chunk-dirs']);
        expect(ok.status).toBe(0);
        expect(readFileSync(join(repo, 'ns', 'dev', 'ns', 'sub', 'host', 'n', 'owner'), 'utf8')).toBe('root@pam\n');
        const listed = pbsfs(['--repository', repo, '--ns', 'dev/sub', '--output-format', 'json', 'snapshots']);
        expect(listed.status).toBe(0);
        expect(listed.stdout).toContain('"backup-time":1700000000');
        // the pxar archive is written, then the image fails: nothing may become visible
        const bad = pbsfs(['--repository', repo, 'backup', src, '--backup-id', 'n', '--backup-time', '1700000500', '--lazy-chunk-dirs', '--image', `disk=${join(tmp, 'missing.img')}`]);
        expect(bad.status).toBe(4);
        expect(bad.stderr).toMatch(/missing\.img/);
        expect(readdirSync(join(repo, 'host', 'n'))).toEqual(['owner']);
      },
      { unsafeCleanup: true },
    );
  });

  it('takes upstream-style specs: several pxar archives, images and config blobs, in order', async () => {
    await withDir(
      async ({ path: tmp }) => {
        const src = join(tmp, 'src');
        mkdirSync(src);
        makeTree(src);
        writeFileSync(join(tmp, 'vm.conf'), 'cores: 2\n');
        writeFileSync(join(tmp, 'disk'), Buffer.alloc(70000, 1));
        const repo = join(tmp, 'store');
        const r = pbsfs(['--repository', repo, '--output-format', 'json', 'backup', `root.pxar:${src}`, `sub.pxar:${join(src, 'dir')}`, `qemu-server.conf:${join(tmp, 'vm.conf')}`, `disk.img:${join(tmp, 'disk')}`, '--backup-id', 'specs', '--lazy-chunk-dirs']);
        expect(r.stderr).toBe('');
        expect(r.status).toBe(0);
        const out = JSON.parse(r.stdout) as { snapshot: string; files: { filename: string }[] };
        expect(out.files.map((f) => f.filename)).toEqual(['root.pxar.didx', 'sub.pxar.didx', 'qemu-server.conf.blob', 'disk.img.fidx', 'catalog.pcat1.didx']);
        const sub = await modelFromSnapshot(repo, out.snapshot, undefined, 'sub');
        expect(sub).toEqual(modelFromFs(join(src, 'dir'), haveGetfattr()));
        const snap = await Snapshot.open(await LocalDatastore.open(repo), [], parseSnapshotRef(out.snapshot));
        const cat = await CatalogReader.open((await snap.openIndex('catalog.pcat1.didx')).readAt);
        expect((await cat.readDir(cat.root())).map((e) => e.name.toString())).toEqual(['root.pxar.didx', 'sub.pxar.didx']);
        const two = pbsfs(['--repository', repo, 'backup', src, src, '--lazy-chunk-dirs']);
        expect(two.status).toBe(2);
        expect(two.stderr).toMatch(/more than one bare directory/);
      },
      { unsafeCleanup: true },
    );
  });
});
