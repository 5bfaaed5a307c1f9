import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FormatError, NotFoundError, UsageError } from '../../src/errors.js';
import { Snapshot } from '../../src/snapshot/snapshot.js';
import {
  formatSnapshotRef,
  parseGroupRef,
  parseNamespace,
  parseSnapshotRef,
  snapshotRelPath,
} from '../../src/store/backup-ref.js';
import { LocalDatastore } from '../../src/store/local-datastore.js';
import { LocalChunkStore } from '../../src/store/local-chunk-store.js';
import { copyDatastore, type DatastoreCopy } from '../helpers/datastore-copy.js';
import { expectedSnapshots, splitSnapshotPath } from '../helpers/datastore-expected.js';
import { datastoreDir, vectorsDir } from '../helpers/paths.js';

describe('snapshot and group references', () => {
  it('parse and format TYPE/ID/TIME, accepting +00:00 and normalising to Z', () => {
    const r = parseSnapshotRef('vm/100/2024-06-05T10:20:30Z');
    expect(r).toEqual({ type: 'vm', id: '100', time: Date.UTC(2024, 5, 5, 10, 20, 30) / 1000 });
    expect(parseSnapshotRef('vm/100/2024-06-05T10:20:30+00:00')).toEqual(r);
    expect(parseSnapshotRef('vm/100/2024-06-05T12:20:30+02:00')).toEqual(r);
    expect(formatSnapshotRef(r)).toBe('vm/100/2024-06-05T10:20:30Z');
    expect(parseGroupRef('host/my-host.example')).toEqual({ type: 'host', id: 'my-host.example' });
    expect(snapshotRelPath(['a', 'b'], r)).toBe('ns/a/ns/b/vm/100/2024-06-05T10:20:30Z');
  });

  const bad = [
    'vm/100',
    'vm/100/2024-06-05T10:20:30Z/extra',
    'xx/100/2024-06-05T10:20:30Z',
    'vm/../2024-06-05T10:20:30Z',
    'vm/.hidden/2024-06-05T10:20:30Z',
    'vm/-x/2024-06-05T10:20:30Z',
    'vm/100/2024-06-05',
    'vm/100/2024-02-30T10:20:30Z',
    'vm/100/2024-06-05T25:20:30Z',
    'vm/100/2024-06-05T10:20:30.5Z',
    'vm/100/1970-01-01T00:00:00Z',
  ];
  for (const s of bad) {
    it(`refuses ${JSON.stringify(s)} with a UsageError quoting it`, () => {
      expect(() => parseSnapshotRef(s)).toThrow(UsageError);
      try {
        parseSnapshotRef(s);
      } catch (e) {
        expect((e as Error).message).toContain(JSON.stringify(s));
      }
    });
  }

  it('namespaces: depth and name rules', () => {
    expect(parseNamespace('')).toEqual([]);
    expect(parseNamespace('/a/b/')).toEqual(['a', 'b']);
    expect(() => parseNamespace('a/b/c/d/e/f/g/h')).toThrow(UsageError);
    expect(() => parseNamespace('a/../b')).toThrow(UsageError);
    expect(() => parseGroupRef('vm')).toThrow(UsageError);
  });
});

describe('vector datastore listing', () => {
  it('namespaces, groups and snapshots match expected.json', async () => {
    const ds = await LocalDatastore.open(datastoreDir);
    const exp = expectedSnapshots();
    const nsList = await ds.listNamespaces();
    const expectedNs = [...new Set(exp.filter((s) => s.namespace).map((s) => s.namespace!))].map((n) => n.split('/'));
    expect(nsList).toEqual(expectedNs);
    const listed: string[] = [];
    for (const ns of [[], ...nsList]) {
      for (const s of await ds.listSnapshots(ns)) {
        expect(s.complete).toBe(true);
        const path = snapshotRelPath(ns, s);
        listed.push(path);
        const e = exp.find((x) => x.path === path)!;
        expect(s.files).toEqual(Object.keys(e.files).sort());
      }
    }
    expect(listed.sort()).toEqual(exp.map((s) => s.path).sort());
    const groups = await ds.listGroups([]);
    // ct < host < vm, as upstream orders them.
    const types = groups.map((g) => g.type);
    expect([...types].sort((a, b) => ['ct', 'host', 'vm'].indexOf(a) - ['ct', 'host', 'vm'].indexOf(b))).toEqual(types);
    const one = splitSnapshotPath(exp[0]!.path);
    const inGroup = await ds.listSnapshots(one.ns, one.ref);
    expect(inGroup.every((s) => s.type === one.ref.type && s.id === one.ref.id)).toBe(true);
  });

  it('refuses a directory that is not a datastore, and a missing one', async () => {
    await expect(LocalDatastore.open(vectorsDir)).rejects.toThrow(FormatError);
    await expect(LocalDatastore.open(join(vectorsDir, 'nope'))).rejects.toThrow(NotFoundError);
  });

  it('a missing chunk is a NotFoundError naming its path', async () => {
    const store = new LocalChunkStore(datastoreDir);
    const digest = Buffer.alloc(32, 0xab);
    await expect(store.get(digest)).rejects.toThrow(NotFoundError);
    await expect(store.get(digest)).rejects.toThrow(`.chunks/abab/${'ab'.repeat(32)}`);
  });
});

describe('hostile directory contents (temp copy)', () => {
  let copy: DatastoreCopy;
  const skipped: string[] = [];
  // A root-namespace snapshot of the vectors; its group gets the hostile neighbours.
  const target = expectedSnapshots().find((s) => !s.namespace)!;
  const targetRef = splitSnapshotPath(target.path).ref;
  const group = `${targetRef.type}/${targetRef.id}`;
  const incompleteRef = `${group}/2030-01-01T00:00:00Z`;
  beforeAll(async () => {
    copy = await copyDatastore();
    const r = copy.root;
    await mkdir(join(r, 'vm', '..bad'), { recursive: true });
    await mkdir(join(r, 'vm', 'bad name'), { recursive: true });
    await mkdir(join(r, group, 'not-a-time'), { recursive: true });
    await mkdir(join(r, incompleteRef), { recursive: true }); // incomplete
    await writeFile(join(r, incompleteRef, 'drive-scsi0.img.tmp_fidx'), 'x');
    await mkdir(join(r, 'ns', 'bad ns'), { recursive: true });
    await mkdir(join(r, 'ct'), { recursive: true });
    await symlink('/etc', join(r, 'ct', 'zz-link'));
    const snap = join(r, target.path);
    await writeFile(join(snap, 'evil name.blob'), 'x');
    await writeFile(join(snap, 'client.log.blob.tmp_abc'), 'x');
    await symlink('/etc/passwd', join(snap, 'link.blob'));
    await writeFile(join(r, '.gc-status'), '{}');
  });
  afterAll(() => copy.cleanup());

  it('skips and reports hostile names, lists incomplete snapshots as such', async () => {
    const ds = await LocalDatastore.open(copy.root);
    const report = (p: string): void => void skipped.push(p);
    const exp = expectedSnapshots();
    const nss = await ds.listNamespaces([], report);
    const expectedNs = new Set<string>();
    for (const s of exp) {
      const parts = (s.namespace ?? '').split('/').filter(Boolean);
      parts.forEach((_p, i) => expectedNs.add(parts.slice(0, i + 1).join('/')));
    }
    expect(nss.map((n) => n.join('/')).sort()).toEqual([...expectedNs].sort());
    const groups = await ds.listGroups([], report);
    const expectedGroups = new Set(exp.filter((s) => !s.namespace).map((s) => s.path.split('/').slice(0, 2).join('/')));
    expect(groups.map((g) => `${g.type}/${g.id}`).sort()).toEqual([...expectedGroups].sort());
    const snaps = await ds.listSnapshots([], targetRef, report);
    const incomplete = snaps.filter((s) => !s.complete);
    expect(incomplete.map((s) => formatSnapshotRef(s))).toEqual([incompleteRef]);
    expect(incomplete[0]!.files).toEqual([]);
    const s2 = snaps.find((s) => formatSnapshotRef(s) === target.path)!;
    expect(s2.files).toEqual(Object.keys(target.files).sort());
    for (const p of ['ns/bad ns', 'vm/..bad', 'vm/bad name', 'ct/zz-link', `${group}/not-a-time`, 'evil name.blob', 'link.blob']) {
      expect(skipped.some((s) => s.endsWith(p))).toBe(true);
    }
  });

  it('opening an incomplete snapshot says so; a symlinked archive is not followed', async () => {
    const ds = await LocalDatastore.open(copy.root);
    await expect(Snapshot.open(ds, [], parseSnapshotRef(incompleteRef))).rejects.toThrow(/incomplete/);
    await expect(Snapshot.open(ds, [], parseSnapshotRef(`${group}/2031-01-01T00:00:00Z`))).rejects.toThrow(NotFoundError);
    await expect(ds.readSnapshotFile([], targetRef, 'link.blob', 1 << 20)).rejects.toThrow(/link\.blob/);
    await expect(ds.readSnapshotFile([], targetRef, '../../x.blob', 1 << 20)).rejects.toThrow(FormatError);
  });
});
