import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, rmdirSync, statSync, writeFileSync, mkdirSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import { withDir } from 'tmp-promise';
import { CryptConfig } from '../../src/crypto/crypt-config.js';
import { decodeBlob } from '../../src/blob/data-blob.js';
import { parseIndex } from '../../src/index/parse-index.js';
import { ChunkStoreWriter, chunkDigest, initDatastore } from '../../src/writer/chunk-store-writer.js';
import { DynamicIndexWriter } from '../../src/writer/dynamic-index-writer.js';
import { FixedIndexWriter } from '../../src/writer/fixed-index-writer.js';
import { SnapshotWriter } from '../../src/writer/snapshot-writer.js';

const KEY = CryptConfig.fromKey(Buffer.alloc(32, 3));

describe('chunk store writer', () => {
  it('stores chunks under their digest, plain or keyed, and never rewrites an existing one', async () => {
    await withDir(
      async ({ path: root }) => {
        const w = new ChunkStoreWriter(root, { prefixDirs: 'lazy' });
        expect(existsSync(join(root, '.lock'))).toBe(true);
        const data = Buffer.from('some chunk data '.repeat(100));
        const d1 = w.insert(data, undefined);
        expect(d1.toString('hex')).toBe(createHash('sha256').update(data).digest('hex'));
        const d2 = w.insert(data, KEY);
        expect(d2.equals(KEY.computeDigest(data))).toBe(true);
        expect(decodeBlob(readFileSync(w.chunkPath(d1)), { name: 'c', expectedDigest: d1 }).equals(data)).toBe(true);
        expect(decodeBlob(readFileSync(w.chunkPath(d2)), { name: 'c', crypt: KEY, expectedDigest: d2 }).equals(data)).toBe(true);
        // an existing file under the name is kept as it is (content and mtime)
        writeFileSync(w.chunkPath(d1), 'placeholder');
        utimesSync(w.chunkPath(d1), 1000, 1000);
        expect(w.insert(data, undefined).equals(d1)).toBe(true);
        expect(readFileSync(w.chunkPath(d1), 'utf8')).toBe('placeholder');
        expect(statSync(w.chunkPath(d1)).mtimeMs).toBe(1_000_000);
        expect(w.stats).toMatchObject({ chunks: 3, newChunks: 2, bytes: 3 * data.length, newBytes: 2 * data.length });
        // only the used prefix directories exist, and no temp files are left
        const dirs = readdirSync(join(root, '.chunks'));
        expect(dirs.sort()).toEqual([...new Set([d1, d2].map((d) => d.toString('hex').slice(0, 4)))].sort());
        for (const d of dirs) for (const f of readdirSync(join(root, '.chunks', d))) expect(f).toMatch(/^[0-9a-f]{64}$/);
      },
      { unsafeCleanup: true },
    );
  });

  it('chunkDigest is sha256 without a key and sha256(data || id_key) with one', () => {
    const d = Buffer.from('hello');
    expect(chunkDigest(d, undefined).toString('hex')).toBe('2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824');
    expect(chunkDigest(d, KEY).equals(createHash('sha256').update(d).update(KEY.idKey).digest())).toBe(true);
  });

  it('initDatastore keeps an existing store as it is', async () => {
    await withDir(
      async ({ path: root }) => {
        mkdirSync(join(root, '.chunks', 'abcd'), { recursive: true });
        writeFileSync(join(root, '.lock'), 'x');
        expect(initDatastore(root, 'all')).toBe(false);
        expect(readdirSync(join(root, '.chunks'))).toEqual(['abcd']);
        expect(readFileSync(join(root, '.lock'), 'utf8')).toBe('x');
      },
      { unsafeCleanup: true },
    );
  });
});

describe('index writers', () => {
  it('dynamic index: entries, csum and header as the reader expects', async () => {
    await withDir(
      async ({ path: dir }) => {
        const w = new DynamicIndexWriter(join(dir, 'a.didx'));
        const digests = [1, 2, 3].map((i) => Buffer.alloc(32, i));
        w.add(100, digests[0]!);
        w.add(50, digests[1]!);
        w.add(1, digests[2]!);
        expect(() => w.add(0, digests[0]!)).toThrow(/empty/);
        const r = w.close(1700000000);
        expect(r.size).toBe(151);
        const raw = readFileSync(join(dir, 'a.didx'));
        expect(raw.length).toBe(4096 + 3 * 40);
        expect(raw.subarray(32, 64).equals(r.csum)).toBe(true);
        expect(r.csum.equals(createHash('sha256').update(raw.subarray(4096)).digest())).toBe(true);
        expect(raw.readBigInt64LE(24)).toBe(1700000000n);
        expect(raw[14]! >> 4).toBe(4); // uuid v4
        const idx = parseIndex(raw, 'a.didx');
        expect([idx.count, idx.size, idx.chunkRange(1)]).toEqual([3, 151, { start: 100, end: 150 }]);
        expect(idx.computeCsum().csum.equals(r.csum)).toBe(true);
        expect(readdirSync(dir)).toEqual(['a.didx']); // temp name renamed away
      },
      { unsafeCleanup: true },
    );
  });

  it('fixed index: only the last chunk may be short; empty images are refused', async () => {
    await withDir(
      async ({ path: dir }) => {
        const w = new FixedIndexWriter(join(dir, 'i.fidx'), 1024);
        w.add(1024, Buffer.alloc(32, 1));
        w.add(10, Buffer.alloc(32, 2));
        expect(() => w.add(1024, Buffer.alloc(32, 3))).toThrow(/last chunk/);
        const r = w.close();
        const idx = parseIndex(readFileSync(join(dir, 'i.fidx')), 'i.fidx');
        expect([idx.count, idx.size, r.size]).toEqual([2, 1034, 1034]);
        expect(idx.computeCsum().csum.equals(r.csum)).toBe(true);
        const e = new FixedIndexWriter(join(dir, 'e.fidx'), 1024);
        expect(() => e.close()).toThrow(/must not be empty/);
        expect(readdirSync(dir)).toEqual(['i.fidx']);
      },
      { unsafeCleanup: true },
    );
  });
});

describe('snapshot writer', () => {
  it('refuses an existing snapshot, bad names and duplicate archives; abort leaves nothing', async () => {
    await withDir(
      async ({ path: repo }) => {
        const opts = { repository: repo, backupType: 'vm' as const, backupId: '100', backupTime: 1700000000, prefixDirs: 'lazy' as const };
        const w = new SnapshotWriter(opts);
        w.addBlob('a.conf.blob', Buffer.from('x'));
        expect(() => w.addBlob('a.conf.blob', Buffer.from('y'))).toThrow(/given twice/);
        expect(() => w.addBlob('../evil.blob', Buffer.from('y'))).toThrow(/invalid archive file name/);
        expect(() => w.addBlob('index.json.blob', Buffer.from('y'))).toThrow(/invalid archive file name/);
        w.finish();
        expect(() => new SnapshotWriter(opts)).toThrow(/already exists/);
        expect(() => new SnapshotWriter({ ...opts, backupId: 'bad id' })).toThrow(/invalid backup id/);
        expect(() => new SnapshotWriter({ ...opts, cryptMode: 'sign-only' })).toThrow(/needs a key/);
        expect(() => new SnapshotWriter({ ...opts, backupTime: 1700000002, owner: 'root@pam\nx' })).toThrow(/invalid owner/);
        const tok = new SnapshotWriter({ ...opts, backupId: '101', owner: 'backup@pbs!job1' });
        tok.finish();
        expect(readFileSync(join(repo, 'vm', '101', 'owner'), 'utf8')).toBe('backup@pbs!job1\n');
        const w2 = new SnapshotWriter({ ...opts, backupTime: 1700000001 });
        w2.addBlob('b.blob', Buffer.from('z'));
        w2.abort();
        // a temp directory of a dead writer process is cleaned up by the next run; a live one is kept
        mkdirSync(join(repo, 'vm', '100', '.tmp_2023-11-14T22:13:25Z_999999999_abcd'));
        mkdirSync(join(repo, 'vm', '100', `.tmp_2023-11-14T22:13:26Z_${process.pid}_abcd`));
        new SnapshotWriter({ ...opts, backupTime: 1700000003 }).abort();
        expect(readdirSync(join(repo, 'vm', '100')).sort()).toEqual([`.tmp_2023-11-14T22:13:26Z_${process.pid}_abcd`, '2023-11-14T22:13:20Z', 'owner']);
        rmdirSync(join(repo, 'vm', '100', `.tmp_2023-11-14T22:13:26Z_${process.pid}_abcd`));
        expect(readdirSync(join(repo, 'vm', '100')).sort()).toEqual(['2023-11-14T22:13:20Z', 'owner']);
        expect(readdirSync(join(repo, 'vm', '100', '2023-11-14T22:13:20Z')).sort()).toEqual(['a.conf.blob', 'index.json.blob']);
      },
      { unsafeCleanup: true },
    );
  });
});
