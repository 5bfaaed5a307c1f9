/**
 * The S3 backend against s3rver holding the vector datastore in PBS 4's bucket layout: it must
 * list and read exactly what the datastore directory gives (listing paginated), find the stores
 * of a bucket, skip and report keys that follow no naming rule, and name a missing chunk.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NotFoundError, UsageError } from '../../src/errors.js';
import { Snapshot } from '../../src/snapshot/snapshot.js';
import { chunkRelPath } from '../../src/store/chunk-store.js';
import { LocalDatastore } from '../../src/store/local-datastore.js';
import { openRepository } from '../../src/store/open-repository.js';
import type { Repository } from '../../src/store/repository.js';
import { S3Repository } from '../../src/store/s3-repository.js';
import { decodeBlob } from '../../src/blob/data-blob.js';
import { datastoreDir } from '../helpers/paths.js';
import { S3RVER_CREDENTIALS, TEST_REGION, bucketInventory, putObject, startS3rver, uploadDatastore, type S3TestServer } from '../helpers/s3-server.js';

let server: S3TestServer;
let local: LocalDatastore;
let inventory: Map<string, string>;

function open(store: string, bucketUrl?: string): Promise<S3Repository> {
  return S3Repository.open(bucketUrl ?? `s3://${server.bucket}/${store}`, {
    endpoint: server.endpoint,
    env: { ...S3RVER_CREDENTIALS, AWS_REGION: TEST_REGION },
    // Small pages: the listing must follow continuation tokens (PBS itself never sends max-keys).
    client: { listMaxKeys: 7, retryBaseMs: 1, warn: () => {} },
  });
}

async function everything(repo: Repository): Promise<unknown> {
  const out: unknown[] = [];
  for (const ns of [[], ...(await repo.listNamespaces([]))]) {
    out.push({ ns, groups: await repo.listGroups(ns), snapshots: await repo.listSnapshots(ns) });
  }
  return out;
}

beforeAll(async () => {
  server = await startS3rver();
  await uploadDatastore(server, datastoreDir, 'store1');
  await uploadDatastore(server, datastoreDir, 'hostile');
  // Keys that follow no naming rule, in a store of their own.
  for (const k of [
    'hostile/.cnt/vm/.hidden/owner',
    'hostile/.cnt/ns/bad name/vm/1/owner',
    'hostile/.cnt/vm/100/yesterday/index.json.blob',
    'hostile/.cnt/vm/100/2024-06-02T10:00:00Z/evil.sh',
    'hostile/.cnt/vm/100/2024-06-02T10:00:00Z/sub/dir.blob',
    'hostile/.cnt/stray',
  ]) {
    await putObject(server, k, 'x');
  }
  // A backup still running: an index, no manifest.
  await putObject(server, 'hostile/.cnt/vm/100/2024-06-09T10:00:00Z/drive-scsi0.img.fidx', 'partial');
  local = await LocalDatastore.open(datastoreDir);
  inventory = await bucketInventory(server);
});

afterAll(async () => {
  await server?.stop();
});

describe('a PBS 4 bucket store read through the Repository interface', () => {
  it('lists the same namespaces, groups and snapshots as the datastore directory', async () => {
    const repo = await open('store1');
    expect(await everything(repo)).toEqual(await everything(local));
    expect(repo.name).toBe(`s3://${server.bucket}/store1`);
  });

  it('reads every file of every snapshot byte for byte', async () => {
    const repo = await open('store1');
    let files = 0;
    for (const ns of [[], ...(await local.listNamespaces([]))]) {
      for (const s of await local.listSnapshots(ns)) {
        const a = await local.openSnapshot(ns, s);
        const b = await repo.openSnapshot(ns, s);
        expect(b.path).toBe(a.path);
        for (const f of s.files) {
          expect((await b.readFile(f, 1 << 26)).equals(await a.readFile(f, 1 << 26))).toBe(true);
          files++;
        }
      }
    }
    expect(files).toBeGreaterThan(20);
  });

  it('reads every chunk byte for byte, and holds the 4 MiB zero chunk PBS adds at creation', async () => {
    const repo = await open('store1');
    const { readdir } = await import('node:fs/promises');
    for (const prefix of await readdir(join(datastoreDir, '.chunks'))) {
      for (const name of await readdir(join(datastoreDir, '.chunks', prefix))) {
        const digest = Buffer.from(name, 'hex');
        expect((await repo.chunkStore.get(digest)).equals(await readFile(join(datastoreDir, chunkRelPath(digest))))).toBe(true);
      }
    }
    const zero = Buffer.from('bb9f8df61474d25e71fa00722318cd387396ca1736605e1248821cc0de3d3af8', 'hex');
    const plain = decodeBlob(await repo.chunkStore.get(zero), { name: 'zero chunk', expectedDigest: zero });
    expect(plain.equals(Buffer.alloc(4 * 1024 * 1024))).toBe(true);
  });

  it('opens a snapshot through the whole stack (manifest, index, chunks) like the local one', async () => {
    const repo = await open('store1');
    const s = (await local.listSnapshots([])).find((x) => x.complete && x.files.some((f) => f.endsWith('.fidx')) && x.type === 'vm')!;
    const a = await Snapshot.open(local, [], s);
    const b = await Snapshot.open(repo, [], s);
    expect(b.manifest).toEqual(a.manifest);
  });

  it('a chunk missing from the bucket is not-found naming its digest', async () => {
    const repo = await open('store1');
    const digest = Buffer.alloc(32, 0xab);
    const e = await repo.chunkStore.get(digest).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(NotFoundError);
    expect((e as Error).message).toContain(digest.toString('hex'));
    expect((e as Error).message).toMatch(/missing from the bucket/);
  });

  it('a snapshot that is not in the bucket fails at openSnapshot', async () => {
    const repo = await open('store1');
    const e = await repo.openSnapshot([], { type: 'vm', id: '100', time: 1 }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(NotFoundError);
  });
});

describe('keys a reader must not follow', () => {
  it('skips and reports every key outside the naming rules, and lists the rest as the directory does', async () => {
    const repo = await open('hostile');
    const skipped: string[] = [];
    const report = (rel: string, why: string): void => void skipped.push(`${rel}: ${why}`);
    const nss = await repo.listNamespaces([], report);
    expect(nss).toEqual(await local.listNamespaces([]));
    const snaps = await repo.listSnapshots([], undefined, report);
    const want = await local.listSnapshots([]);
    const running = snaps.find((s) => s.time === Date.parse('2024-06-09T10:00:00Z') / 1000);
    expect(running).toMatchObject({ complete: false, files: ['drive-scsi0.img.fidx'] });
    expect(snaps.filter((s) => s !== running)).toEqual(want);
    expect(skipped.sort()).toEqual(
      [
        'ns/bad name/vm/1/owner: not a valid namespace name',
        'stray: not a namespace, group or snapshot object',
        'vm/.hidden/owner: not a valid backup id',
        'vm/100/yesterday/index.json.blob: not a snapshot directory name',
        'vm/100/2024-06-02T10:00:00Z/evil.sh: not an archive file',
        'vm/100/2024-06-02T10:00:00Z/sub/dir.blob: not an archive file',
      ].sort(),
    );
  });
});

describe('finding the store', () => {
  it('s3://BUCKET alone lists the stores (with the host of .in-use) and says how to pick one', async () => {
    const e = await open('', `s3://${server.bucket}`).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(UsageError);
    expect((e as Error).message).toBe(
      `s3://${server.bucket} names a bucket, not a datastore; it holds: hostile (in use by pbs-test-host), store1 (in use by pbs-test-host). Pick one with --repository s3://${server.bucket}/hostile`,
    );
  });

  it('a store that is not in the bucket is not-found, naming the stores there are', async () => {
    const e = await open('nope').catch((x: unknown) => x);
    expect(e).toBeInstanceOf(NotFoundError);
    expect((e as Error).message).toMatch(/no datastore "nope" in bucket pbs-test; the bucket holds hostile, store1/);
  });

  it('openRepository takes s3:// to this backend', async () => {
    const repo = await openRepository(`s3://${server.bucket}/store1`, {
      env: { ...S3RVER_CREDENTIALS, AWS_REGION: TEST_REGION },
      s3: { endpoint: server.endpoint, client: { warn: () => {} } },
    });
    expect(repo.kind).toBe('s3');
    await repo.close();
  });
});

describe('read-only', () => {
  it('sent only GET and HEAD, and the bucket is exactly as it was', async () => {
    expect(server.requests.length).toBeGreaterThan(50);
    expect(new Set(server.requests.map((r) => r.method))).toEqual(new Set(['GET']));
    expect(await bucketInventory(server)).toEqual(inventory);
  });
});
