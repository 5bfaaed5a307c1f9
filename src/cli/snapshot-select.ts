/**
 * Which snapshot a SNAPSHOT argument means. Besides the full `TYPE/ID/TIME`, as
 * proxmox-backup-client and restic allow:
 *   - a group `TYPE/ID` (or `TYPE/ID/latest`): that group's newest complete snapshot;
 *   - `latest`: the newest complete snapshot of any group in the namespace.
 * A namespace may be given with --ns or as the datastore path prefix `ns/A/ns/B/` of the
 * argument; the same prefixed form is how pbsfs prints namespaced snapshots
 * (`formatNamespacedRef`). Unknown namespaces and groups are errors, never "nothing there".
 */
import { NotFoundError, UsageError } from '../errors.js';
import {
  formatGroupRef,
  formatNamespace,
  formatSnapshotRef,
  namespaceRelPath,
  parseGroupRef,
  parseNamespace,
  parseSnapshotRef,
  type GroupRef,
  type Namespace,
  type SnapshotRef,
} from '../store/backup-ref.js';
import type { Repository } from '../store/repository.js';

export type SnapshotLister = Pick<Repository, 'listGroups' | 'listSnapshots' | 'listNamespaces'>;

export const LATEST = 'latest';

export interface SelectedSnapshot {
  ns: Namespace;
  ref: SnapshotRef;
}

/** `ns/dev/host/x/T` for a snapshot in namespace dev; the plain ref in the root namespace. */
export function formatNamespacedRef(ns: Namespace, ref: SnapshotRef): string {
  const prefix = namespaceRelPath(ns);
  return prefix === '' ? formatSnapshotRef(ref) : `${prefix}/${formatSnapshotRef(ref)}`;
}

/**
 * Splits a leading `ns/A/ns/B/` off `arg`. With --ns as well, both must name the same
 * namespace (an argument that says one namespace and an option that says another is a mistake).
 */
export function splitNamespace(arg: string, optionNs: Namespace): { ns: Namespace; rest: string } {
  const parts = arg.split('/');
  const comps: string[] = [];
  let i = 0;
  while (parts[i] === 'ns' && parts.length > i + 2) {
    comps.push(parts[i + 1]!);
    i += 2;
  }
  if (comps.length === 0) return { ns: optionNs, rest: arg };
  const ns = parseNamespace(comps.join('/'));
  if (optionNs.length > 0 && formatNamespace(optionNs) !== formatNamespace(ns)) {
    throw new UsageError(`${JSON.stringify(arg)} is in namespace ${formatNamespace(ns)}, but --ns says ${formatNamespace(optionNs)}`, {
      errorCode: 'option-conflict',
    });
  }
  return { ns, rest: parts.slice(i).join('/') };
}

/** Throws namespace-not-found unless `ns` exists (the root always does). */
export async function requireNamespace(ds: SnapshotLister, ns: Namespace): Promise<void> {
  if (ns.length === 0) return;
  const parent = ns.slice(0, -1);
  const found = (await ds.listNamespaces(parent)).some((n) => formatNamespace(n) === formatNamespace(ns));
  if (!found) throw new NotFoundError(`no such namespace: ${formatNamespace(ns)}`, { errorCode: 'namespace-not-found' });
}

async function newestOfGroup(ds: SnapshotLister, ns: Namespace, group: GroupRef): Promise<SnapshotRef> {
  const where = ns.length ? ` in namespace ${formatNamespace(ns)}` : '';
  const groups = await ds.listGroups(ns);
  if (!groups.some((g) => g.type === group.type && g.id === group.id)) {
    throw new NotFoundError(`no such backup group${where}`, { file: formatGroupRef(group), errorCode: 'group-not-found' });
  }
  const snaps = (await ds.listSnapshots(ns, group)).filter((s) => s.complete);
  const newest = snaps[snaps.length - 1];
  if (newest === undefined) {
    throw new NotFoundError(`backup group has no complete snapshot${where}`, { file: formatGroupRef(group), errorCode: 'group-empty' });
  }
  return { type: newest.type, id: newest.id, time: newest.time };
}

/** Resolves a SNAPSHOT argument (see the module comment) against the datastore. */
export async function selectSnapshot(ds: SnapshotLister, optionNs: Namespace, arg: string): Promise<SelectedSnapshot> {
  const { ns, rest } = splitNamespace(arg, optionNs);
  const parts = rest.split('/');
  if (rest === LATEST) {
    await requireNamespace(ds, ns);
    const all = (await ds.listSnapshots(ns)).filter((s) => s.complete);
    if (all.length === 0) {
      const where = ns.length ? `namespace ${formatNamespace(ns)}` : 'the root namespace';
      throw new NotFoundError(`${where} has no complete snapshot`, { errorCode: 'snapshot-not-found' });
    }
    // Newest by time; equal times (different groups) by upstream's group order, last wins.
    const newest = all.reduce((a, b) => (b.time >= a.time ? b : a));
    return { ns, ref: { type: newest.type, id: newest.id, time: newest.time } };
  }
  if (parts.length === 2 || (parts.length === 3 && parts[2] === LATEST)) {
    await requireNamespace(ds, ns);
    return { ns, ref: await newestOfGroup(ds, ns, parseGroupRef(parts.slice(0, 2).join('/'))) };
  }
  const ref = parseSnapshotRef(rest);
  await requireNamespace(ds, ns);
  return { ns, ref };
}

/** The argument's syntax alone (before a datastore is at hand): throws a usage error if bad. */
export function checkSnapshotSyntax(arg: string): void {
  const { rest } = splitNamespace(arg, []);
  const parts = rest.split('/');
  if (rest === LATEST) return;
  if (parts.length === 2 || (parts.length === 3 && parts[2] === LATEST)) parseGroupRef(parts.slice(0, 2).join('/'));
  else parseSnapshotRef(rest);
}
