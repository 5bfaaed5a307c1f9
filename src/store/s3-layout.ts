/**
 * The object keys of a PBS 4 S3 datastore (spec pbs-remote-4.2 2.1), and the parser that turns
 * a prefix listing of `<store>/.cnt/` back into namespaces, groups and snapshots.
 *
 * Keys are untrusted the same way directory entries of a local datastore are: each component
 * passes the naming rules of backup-ref.ts before it means anything; every other key is skipped
 * and reported, never followed.
 */
import { chunkRelPath } from './chunk-store.js';
import {
  MAX_NAMESPACE_DEPTH,
  formatNamespace,
  isBackupType,
  isValidArchiveFileName,
  isValidBackupId,
  parseSnapshotDirName,
  type BackupType,
  type Namespace,
} from './backup-ref.js';

/** `<store>/.in-use`: PBS's marker of the host that owns the store (never touched by a reader). */
export const IN_USE_MARKER = '.in-use';
/** The empty object PBS writes for each namespace: `.cnt/ns/a/ns/b/.namespace`. */
export const NAMESPACE_MARKER = '.namespace';
/** Objects of a group that are not snapshots. */
const GROUP_FILES = new Set(['owner', 'notes']);

export function chunkKey(store: string, digest: Uint8Array): string {
  return `${store}/${chunkRelPath(digest)}`;
}

/** The prefix every metadata object of the store lives under. */
export function contentPrefix(store: string): string {
  return `${store}/.cnt/`;
}

/** The key of a datastore-relative metadata path (`vm/100/<time>/index.json.blob`). */
export function contentKey(store: string, rel: string): string {
  return `${contentPrefix(store)}${rel}`;
}

export interface ListedSnapshot {
  /** Validated archive file names, sorted. */
  files: string[];
  /** Whether `.protected` is there. */
  protected: boolean;
}

export interface ListedGroup {
  type: BackupType;
  id: string;
  /** Snapshot time (epoch s) -> files. */
  snapshots: Map<number, ListedSnapshot>;
}

export interface ListedNamespace {
  ns: Namespace;
  /** `type/id` -> group. */
  groups: Map<string, ListedGroup>;
}

/** A key that was not understood: datastore-relative path, the reason, and where it sits. */
export interface SkippedKey {
  rel: string;
  reason: string;
  /** Namespace (joined) the key lies in, and the group (`type/id`) and snapshot time when known. */
  ns: string;
  /** True when the key is bad at a namespace component (reported by listNamespaces). */
  inNamespacePath?: boolean;
  group?: string;
  time?: number;
}

/** What a `.cnt/` listing says the store holds. */
export class ContentTree {
  /** Joined namespace ('' for the root) -> namespace; every ancestor of a listed one is present. */
  readonly namespaces = new Map<string, ListedNamespace>();
  readonly skipped: SkippedKey[] = [];

  constructor() {
    this.namespaces.set('', { ns: [], groups: new Map() });
  }

  private namespace(ns: Namespace): ListedNamespace {
    for (let i = 1; i <= ns.length; i++) {
      const part = ns.slice(0, i);
      const key = formatNamespace(part);
      if (!this.namespaces.has(key)) this.namespaces.set(key, { ns: part, groups: new Map() });
    }
    return this.namespaces.get(formatNamespace(ns))!;
  }

  /** Files a key (relative to `.cnt/`) into the tree, or records why it was skipped. */
  add(rel: string): void {
    const parts = rel.split('/');
    const ns: string[] = [];
    let i = 0;
    while (parts[i] === 'ns' && i + 1 < parts.length) {
      const name = parts[i + 1]!;
      if (!isValidBackupId(name) || ns.length >= MAX_NAMESPACE_DEPTH) {
        this.skip(rel, ns.length >= MAX_NAMESPACE_DEPTH ? 'namespace deeper than the limit' : 'not a valid namespace name', ns, undefined, undefined, true);
        return;
      }
      ns.push(name);
      i += 2;
    }
    const rest = parts.slice(i);
    if (rest.length === 1 && rest[0] === NAMESPACE_MARKER && ns.length > 0) {
      this.namespace(ns);
      return;
    }
    const [type, id, third, fourth, ...more] = rest;
    if (type === undefined || id === undefined || !isBackupType(type)) {
      this.skip(rel, 'not a namespace, group or snapshot object', ns);
      return;
    }
    if (!isValidBackupId(id)) {
      this.skip(rel, 'not a valid backup id', ns);
      return;
    }
    const groupKey = `${type}/${id}`;
    if (third === undefined) {
      this.skip(rel, 'unexpected object in a namespace', ns);
      return;
    }
    if (fourth === undefined) {
      if (GROUP_FILES.has(third)) this.group(ns, type, id);
      else this.skip(rel, 'unexpected file in a group', ns, groupKey);
      return;
    }
    const time = parseSnapshotDirName(third);
    if (time === undefined) {
      this.skip(rel, 'not a snapshot directory name', ns, groupKey);
      return;
    }
    if (more.length > 0) {
      this.skip(rel, 'not an archive file', ns, groupKey, time);
      return;
    }
    const snap = this.snapshot(ns, type, id, time);
    if (isValidArchiveFileName(fourth)) snap.files.push(fourth);
    else if (fourth === '.protected') snap.protected = true;
    // Transient and quarantine objects are ignored quietly, as in a local datastore.
    else if (!fourth.includes('.tmp_') && !fourth.endsWith('.bad')) this.skip(rel, 'not an archive file', ns, groupKey, time);
  }

  private group(ns: Namespace, type: BackupType, id: string): ListedGroup {
    const n = this.namespace(ns);
    const key = `${type}/${id}`;
    let g = n.groups.get(key);
    if (!g) n.groups.set(key, (g = { type, id, snapshots: new Map() }));
    return g;
  }

  private snapshot(ns: Namespace, type: BackupType, id: string, time: number): ListedSnapshot {
    const g = this.group(ns, type, id);
    let s = g.snapshots.get(time);
    if (!s) g.snapshots.set(time, (s = { files: [], protected: false }));
    return s;
  }

  private skip(rel: string, reason: string, ns: Namespace, group?: string, time?: number, inNamespacePath = false): void {
    this.skipped.push({
      rel,
      reason,
      ns: formatNamespace(ns),
      ...(group !== undefined ? { group } : {}),
      ...(time !== undefined ? { time } : {}),
      ...(inNamespacePath ? { inNamespacePath } : {}),
    });
  }

  /** Sorts every snapshot's file list (call once after the last add). */
  finish(): this {
    for (const n of this.namespaces.values()) for (const g of n.groups.values()) for (const s of g.snapshots.values()) s.files.sort();
    return this;
  }
}
