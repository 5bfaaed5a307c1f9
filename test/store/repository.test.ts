import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir, homedir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { NotFoundError } from '../../src/errors.js';
import { Snapshot } from '../../src/snapshot/snapshot.js';
import { parseSnapshotRef } from '../../src/store/backup-ref.js';
import { LocalDatastore } from '../../src/store/local-datastore.js';
import { locateRepository, openRepository } from '../../src/store/open-repository.js';
import { datastoreDir } from '../helpers/paths.js';

describe('repository strings', () => {
  const scratch = mkdtempSync(join(tmpdir(), 'pbsfs-repo-'));
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));

  it('paths (/, ., ~ or an existing directory) are local datastores', () => {
    expect(locateRepository('/srv/store')).toEqual({ kind: 'local', path: '/srv/store' });
    expect(locateRepository('./store')).toEqual({ kind: 'local', path: './store' });
    expect(locateRepository('~/store')).toEqual({ kind: 'local', path: join(homedir(), 'store') });
    const cwd = process.cwd();
    try {
      process.chdir(scratch);
      rmSync(join(scratch, 'host:store'), { force: true, recursive: true });
      expect(locateRepository('host:store').kind).toBe('pbs');
      // A directory of that name wins over the server reading.
      mkdirSync(join(scratch, 'host:store'));
      expect(locateRepository('host:store')).toEqual({ kind: 'local', path: 'host:store' });
    } finally {
      process.chdir(cwd);
    }
  });

  it('s3:// is a bucket and anything else a PBS server', () => {
    expect(locateRepository('s3://bucket/store').kind).toBe('s3');
    expect(locateRepository('store1').kind).toBe('pbs');
    expect(locateRepository('root@pam@pbs.example:store1').kind).toBe('pbs');
  });

  it('opens a datastore directory as the local backend', async () => {
    const repo = await openRepository(datastoreDir);
    expect(repo.kind).toBe('local');
    expect(repo.name).toBe(datastoreDir);
    await repo.close();
  });
});

describe('the local backend behind the Repository interface', () => {
  it('a snapshot that does not exist fails at openSnapshot with NotFoundError naming it', async () => {
    const ds = await LocalDatastore.open(datastoreDir);
    const ref = parseSnapshotRef('host/nobody/2020-01-01T00:00:00Z');
    const e = await ds.openSnapshot([], ref).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(NotFoundError);
    expect(String((e as Error).message)).toMatch(/host\/nobody\/2020-01-01T00:00:00Z.*no such snapshot/);
  });

  it('every opened snapshot shares one chunk store (so one cache) and reads its files', async () => {
    const ds = await LocalDatastore.open(datastoreDir);
    const [a, b] = (await ds.listSnapshots([])).filter((s) => s.complete);
    expect(a && b).toBeTruthy();
    const sa = await ds.openSnapshot([], a!);
    const sb = await ds.openSnapshot([], b!);
    expect(sa.chunkStore).toBe(sb.chunkStore);
    const raw = await sa.readFile('index.json.blob', 1 << 20);
    expect(raw.length).toBeGreaterThan(12);
    await expect(sa.readFile('missing.blob', 1 << 20)).rejects.toBeInstanceOf(NotFoundError);
    await sa.close();
    await sb.close();
    const snap = await Snapshot.open(ds, [], a!);
    expect(snap.source.path).toBe(snap.path);
    await snap.close();
  });
});
