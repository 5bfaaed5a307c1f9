/**
 * Metadata harvesting (src/pxar/metadata-harvest.ts): a unified archive walked through a small
 * chunk cache answers exactly as without harvesting, a second walk fetches (almost) nothing, what
 * is kept is always the stream's own bytes, and hostile streams, a tiny budget or a walk that lost
 * its way change nothing but the number of chunks fetched.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dir, type DirectoryResult } from 'tmp-promise';
import { ChunkReader } from '../../src/chunks/chunk-reader.js';
import { loadKeyFile } from '../../src/crypto/key-config.js';
import { IndexReadAt } from '../../src/index/index-read-at.js';
import { HarvestBudget, HarvestingReadAt } from '../../src/pxar/metadata-harvest.js';
import { Snapshot } from '../../src/snapshot/snapshot.js';
import { parseNamespace, parseSnapshotRef } from '../../src/store/backup-ref.js';
import { LocalDatastore } from '../../src/store/local-datastore.js';
import { openPxarTree } from '../../src/vfs/pxar-tree.js';
import type { VfsNode } from '../../src/vfs/types.js';
import { runBackup } from '../../src/writer/backup.js';
import { datastoreDir, keysDir, vectorsDir, VECTOR_PASSPHRASE } from '../helpers/paths.js';
import { readFileSync } from 'node:fs';

let tmp: DirectoryResult;
let store = '';
const SNAP = 'host/harvest/2024-01-01T00:00:00Z';

beforeAll(async () => {
  tmp = await dir({ unsafeCleanup: true });
  const src = join(tmp.path, 'src');
  // 30 directories of 40 files each: in a unified archive their entries lie between contents.
  for (let d = 0; d < 30; d++) {
    const sub = join(src, `d${String(d).padStart(2, '0')}`);
    mkdirSync(sub, { recursive: true });
    for (let f = 0; f < 40; f++) writeFileSync(join(sub, `f${f}.bin`), randomBytes(1000 + ((d * 40 + f) % 7) * 700));
    symlinkSync(`f0.bin`, join(sub, 'link'));
  }
  writeFileSync(join(src, 'big.bin'), randomBytes(600_000));
  store = join(tmp.path, 'store');
  runBackup({ repository: store, backupType: 'host', backupId: 'harvest', backupTime: 1_704_067_200, source: src, archiveName: 'root', chunkSize: 64 * 1024, xattrs: false, catalog: false });
}, 60_000);

afterAll(async () => {
  await tmp?.cleanup();
});

async function openIndex(root: string, ref: string, archive: string, cacheBytes: number, crypt?: Awaited<ReturnType<typeof loadKeyFile>>['crypt'], ns = '') {
  const ds = await LocalDatastore.open(root);
  const chunkReader = new ChunkReader(ds.chunkStore, { cacheBytes, ...(crypt ? { crypt } : {}) });
  const snap = await Snapshot.open(ds, parseNamespace(ns), parseSnapshotRef(ref), { chunkReader, ...(crypt ? { crypt } : {}) });
  const opened = await snap.openIndex(archive);
  expect(opened.readAt).toBeInstanceOf(IndexReadAt);
  return { readAt: opened.readAt as IndexReadAt, chunkReader };
}

/** Everything a mount would show: path, stat, link target, content hash; in walk order. */
async function walk(node: VfsNode, path = ''): Promise<string[]> {
  const st = await node.stat();
  let line = `${path} ${st.mode.toString(8)} ${st.uid} ${st.gid} ${st.size} ${st.mtimeSec}.${st.mtimeNsec} ${st.nlink}`;
  if (node.readlink) line += ` -> ${(await node.readlink()).toString('hex')}`;
  if (node.open) {
    const h = await node.open();
    line += ` ${createHash('sha256').update(await h.read(0, st.size)).digest('hex')}`;
    await h.release();
  }
  const out = [line];
  for (const c of (await node.readdir?.()) ?? []) out.push(...(await walk(c.node, `${path}/${c.name.toString('hex')}`)));
  return out;
}

/** Checks every range `h` serves (probing every `step` bytes) against the stream; how many it served. */
async function servedBytesAreTheStream(h: HarvestingReadAt, readAt: IndexReadAt, step: number, max: number): Promise<number> {
  const whole = await readAt.readAt(0, readAt.size);
  let served = 0;
  for (let o = 0; o < readAt.size; o += step) {
    const b = h.readSome(o, 1, max);
    if (b === undefined) continue;
    served++;
    expect(b.equals(whole.subarray(o, o + b.length)), `offset ${o}`).toBe(true);
  }
  return served;
}

describe('metadata harvesting', () => {
  it('walks equal the walk without harvesting; a second walk fetches almost nothing', async () => {
    const plain = await openIndex(store, SNAP, 'root.pxar.didx', 256 * 1024);
    const expected = await walk(await openPxarTree(plain.readAt));
    // Through openPxarTree's option, as a mount opens an archive.
    const viaOption = await openIndex(store, SNAP, 'root.pxar.didx', 256 * 1024);
    const optionBudget = new HarvestBudget(64 * 1024 * 1024);
    expect(await walk(await openPxarTree(viaOption.readAt, undefined, { harvest: optionBudget }))).toEqual(expected);
    expect(optionBudget.used).toBeGreaterThan(0);
    // A second tree over the same harvested stream (new accessor: empty entry caches).
    const { readAt, chunkReader } = await openIndex(store, SNAP, 'root.pxar.didx', 256 * 1024);
    const budget = new HarvestBudget(64 * 1024 * 1024);
    const h = new HarvestingReadAt(readAt, budget);
    expect(await walk(await openPxarTree(h))).toEqual(expected);
    const afterFirst = chunkReader.stats.chunksFetched;
    // Metadata only (no contents) a second time: served from harvested bytes.
    const meta = async (n: VfsNode): Promise<number> => {
      await n.stat();
      let k = 1;
      for (const c of (await n.readdir?.()) ?? []) k += await meta(c.node);
      return k;
    };
    expect(await meta(await openPxarTree(h))).toBe(expected.length);
    expect(chunkReader.stats.chunksFetched - afterFirst).toBeLessThanOrEqual(1);
    expect(h.finished).toBe(true);
    expect(budget.used).toBeGreaterThan(0);
    expect(budget.used).toBeLessThan(readAt.size / 4); // contents are not kept
    // Without harvesting the same metadata walk fetches chunks again (the cache holds 4 of them).
    const before = plain.chunkReader.stats.chunksFetched;
    await meta(await openPxarTree(plain.readAt));
    expect(plain.chunkReader.stats.chunksFetched - before).toBeGreaterThan(10);
  });

  it('every byte it serves is the stream byte at that offset', async () => {
    const { readAt } = await openIndex(store, SNAP, 'root.pxar.didx', 64 * 1024 * 1024);
    const h = new HarvestingReadAt(readAt, new HarvestBudget(1 << 30));
    // Read the whole stream through the index once: the walk sees every chunk in order.
    for (let o = 0; o < readAt.size; o += 1 << 20) await readAt.readAt(o, 1 << 20);
    expect(h.finished).toBe(true);
    expect(h.harvestedBytes).toBeGreaterThan(30 * 40 * 40);
    expect(await servedBytesAreTheStream(h, readAt, 37, 3000)).toBeGreaterThan(100);
  });

  it('walks started out of order (random lookups through a 2-chunk cache) keep only the stream bytes', async () => {
    const { readAt } = await openIndex(store, SNAP, 'root.pxar.didx', 128 * 1024);
    const h = new HarvestingReadAt(readAt, new HarvestBudget(1 << 30));
    const { PxarAccessor } = await import('../../src/pxar/accessor.js');
    const acc = await PxarAccessor.open(h);
    let seed = 7;
    const rnd = (n: number): number => ((seed = (seed * 1103515245 + 12345) % 2147483648) % n);
    for (let i = 0; i < 150; i++) {
      const e = await acc.lookupPath(`d${String(rnd(30)).padStart(2, '0')}/f${rnd(40)}.bin`);
      expect(e).toBeDefined();
      if (i % 3 === 0) await acc.read(e!, 0, 100);
    }
    expect(h.restarts).toBeGreaterThan(0);
    expect(await servedBytesAreTheStream(h, readAt, 29, 5000)).toBeGreaterThan(50);
  });

  it('a tiny budget stops the walk; answers do not change', async () => {
    const plain = await openIndex(store, SNAP, 'root.pxar.didx', 256 * 1024);
    const expected = await walk(await openPxarTree(plain.readAt));
    const { readAt } = await openIndex(store, SNAP, 'root.pxar.didx', 256 * 1024);
    const budget = new HarvestBudget(5000);
    expect(await walk(await openPxarTree(readAt, undefined, { harvest: budget }))).toEqual(expected);
    expect(budget.used).toBeLessThanOrEqual(5000);
  });

  it('a walk that lost its way (a deep lookup first) restarts at an entry it is shown', async () => {
    const { readAt, chunkReader } = await openIndex(store, SNAP, 'root.pxar.didx', 128 * 1024);
    const budget = new HarvestBudget(64 * 1024 * 1024);
    const h = new HarvestingReadAt(readAt, budget);
    const { PxarAccessor } = await import('../../src/pxar/accessor.js');
    const acc = await PxarAccessor.open(h);
    // Straight to the last directory: the walk from offset 0 stalls behind the big contents.
    const last = await acc.lookupPath('d29');
    expect(last).toBeDefined();
    await acc.readdir(last!);
    expect(h.restarts).toBeGreaterThan(0);
    const before = chunkReader.stats.chunksFetched;
    const acc2 = await PxarAccessor.open(h);
    await acc2.readdir((await acc2.lookupPath('d29'))!);
    expect(chunkReader.stats.chunksFetched - before).toBeLessThanOrEqual(1);
  });

  it('a stream that is not pxar (random bytes) stops the walk at once and serves only its own bytes', async () => {
    const { readAt } = await openIndex(store, SNAP, 'root.pxar.didx', 64 * 1024 * 1024);
    const h = new HarvestingReadAt(readAt, new HarvestBudget(1 << 30));
    // Feed it chunks that do not parse: a header claiming more than the stream holds.
    const junk = randomBytes(70_000);
    junk.writeUInt32LE(0xffffffff, 8);
    junk.writeUInt32LE(0x1fffff, 12);
    (h as unknown as { onChunk(s: number, d: Buffer): void }).onChunk(0, junk);
    expect(h.finished).toBe(true);
    expect(h.harvestedBytes).toBe(0);
    expect(h.readSome(0, 1, 100)).toBeUndefined();
  });

  it('vector archives: the same walk with and without harvesting', async () => {
    const expected = JSON.parse(readFileSync(join(vectorsDir, 'datastore', 'expected.json'), 'utf8')) as { snapshots: { path: string; namespace?: string; files: Record<string, unknown> }[] };
    const { crypt } = await loadKeyFile(join(keysDir, 'key-scrypt.json'), async () => VECTOR_PASSPHRASE);
    let n = 0;
    for (const s of expected.snapshots.filter((x) => 'root.pxar.didx' in x.files)) {
      const ref = s.path.replace(/^ns\/[^/]+\//, '');
      const ns = s.namespace ?? '';
      const a = await openIndex(datastoreDir, ref, 'root.pxar.didx', 0, crypt, ns);
      const b = await openIndex(datastoreDir, ref, 'root.pxar.didx', 0, crypt, ns);
      expect(await walk(await openPxarTree(b.readAt, undefined, { harvest: new HarvestBudget(1 << 24) }))).toEqual(await walk(await openPxarTree(a.readAt)));
      n++;
    }
    expect(n).toBeGreaterThan(0);
  });
});
