/**
 * A whole datastore as a browsable tree, the layout of the datastore itself:
 *
 *   [ns/NAME/[ns/NAME/...]]TYPE/ID/TIME/ARCHIVE/...
 *
 * Directories are listed from the datastore on first use; a snapshot's manifest is read (and its
 * key obtained) only when that snapshot directory is entered, and an archive is opened only when
 * its directory is entered. Snapshot directories without a manifest (a backup still running or
 * aborted) are not shown.
 */
import type { Snapshot } from '../snapshot/snapshot.js';
import { BACKUP_TYPES, formatBackupTime, type GroupRef, type Namespace, type SnapshotRef } from '../store/backup-ref.js';
import type { Repository } from '../store/repository.js';
import { snapshotEntries } from './snapshot-nodes.js';
import type { PxarTreeOptions } from './pxar-tree.js';
import type { VfsDirEntry, VfsNode } from './types.js';
import { LazyDir } from './virtual-nodes.js';

export interface DatastoreTreeOptions {
  /**
   * Opens one snapshot (reads its manifest) with the right key and chunk reader. Without a key,
   * encrypted archives answer EIO when entered.
   */
  openSnapshot: (ds: Repository, ns: Namespace, ref: SnapshotRef) => Promise<Snapshot>;
  tree?: PxarTreeOptions;
}

const entry = (name: string, node: VfsNode): VfsDirEntry => ({ name: Buffer.from(name), node });

function snapshotNode(ds: Repository, ns: Namespace, ref: SnapshotRef, o: DatastoreTreeOptions): VfsNode {
  return new LazyDir(
    async () => {
      const snap = await o.openSnapshot(ds, ns, ref);
      return snapshotEntries(snap, o.tree).map((e) => entry(e.name, e.node));
    },
    { mtimeSec: ref.time },
  );
}

function groupNode(ds: Repository, ns: Namespace, g: GroupRef, o: DatastoreTreeOptions): VfsNode {
  return new LazyDir(async () => {
    const snaps = await ds.listSnapshots(ns, g);
    return snaps.filter((s) => s.complete).map((s) => entry(formatBackupTime(s.time), snapshotNode(ds, ns, s, o)));
  });
}

/** The tree of one namespace (the root namespace is `[]`). */
export function datastoreTree(ds: Repository, ns: Namespace, o: DatastoreTreeOptions): VfsNode {
  return new LazyDir(async () => {
    const out: VfsDirEntry[] = [];
    const children = (await ds.listNamespaces(ns)).filter((c) => c.length === ns.length + 1);
    if (children.length > 0) {
      out.push(
        entry(
          'ns',
          new LazyDir(async () => children.map((c) => entry(c[c.length - 1]!, datastoreTree(ds, c, o)))),
        ),
      );
    }
    const groups = await ds.listGroups(ns);
    for (const type of BACKUP_TYPES) {
      const ofType = groups.filter((g) => g.type === type);
      if (ofType.length === 0) continue;
      out.push(entry(type, new LazyDir(async () => ofType.map((g) => entry(g.id, groupNode(ds, ns, g, o))))));
    }
    return out;
  });
}
