/**
 * Names inside a datastore: backup types, group ids, snapshot times, namespaces, archive names.
 *
 * Everything read from a directory listing or the command line passes through these validators
 * before it becomes part of a path, so a hostile name (`..`, `/`, NUL, a leading dot) can never
 * steer a read outside the datastore. The regexes are the naming rules of spec 9.2.
 */
import { UsageError } from '../errors.js';
import { formatRfc3339Utc, parseRfc3339 } from '../util/rfc3339.js';

export type BackupType = 'vm' | 'ct' | 'host';
export const BACKUP_TYPES: readonly BackupType[] = ['ct', 'host', 'vm']; // listing order upstream

/** Backup ids, namespace components and server archive names share one safe-id rule. */
export const SAFE_ID_RE = /^[A-Za-z0-9_][A-Za-z0-9._-]*$/;
export const SNAPSHOT_DIR_RE = /^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$/;
/** A server-side archive file name: safe id ending in .blob, .fidx or .didx. */
export const ARCHIVE_FILE_RE = /^[A-Za-z0-9_][A-Za-z0-9._-]*\.(?:blob|fidx|didx)$/;
export const MAX_NAMESPACE_DEPTH = 7;
export const MAX_NAMESPACE_LENGTH = 256;
/** Upstream limits ids to this many characters (SAFE_ID schema max length). */
const MAX_ID_LENGTH = 128;

export interface GroupRef {
  type: BackupType;
  id: string;
}

export interface SnapshotRef extends GroupRef {
  /** backup-time, Unix epoch seconds (>= 1). */
  time: number;
}

/** A namespace as its components; [] is the root namespace. */
export type Namespace = readonly string[];

export function isBackupType(s: string): s is BackupType {
  return s === 'vm' || s === 'ct' || s === 'host';
}

export function isValidBackupId(s: string): boolean {
  return s.length <= MAX_ID_LENGTH && SAFE_ID_RE.test(s);
}

export function isValidArchiveFileName(s: string): boolean {
  return s.length <= MAX_ID_LENGTH * 2 && ARCHIVE_FILE_RE.test(s);
}

/** Epoch seconds -> `YYYY-MM-DDTHH:MM:SSZ` (the snapshot directory name). */
export function formatBackupTime(epoch: number): string {
  return formatRfc3339Utc(epoch);
}

/**
 * Parses an RFC 3339 time without fractional seconds (`Z` or a `±HH:MM` offset) into epoch
 * seconds, or undefined. The `Z` form must be canonical (no Feb 30, no leap second), because it
 * names a directory.
 */
export function parseTime(s: string): number | undefined {
  let t: number;
  try {
    t = parseRfc3339(s);
  } catch {
    return undefined;
  }
  if (!Number.isSafeInteger(t)) return undefined;
  if (s.endsWith('Z') && formatRfc3339Utc(t) !== s) return undefined;
  return t;
}

/** A snapshot directory name -> epoch, or undefined if it is not one. */
export function parseSnapshotDirName(name: string): number | undefined {
  if (!SNAPSHOT_DIR_RE.test(name)) return undefined;
  const t = parseTime(name);
  return t !== undefined && t >= 1 ? t : undefined;
}

export function formatGroupRef(g: GroupRef): string {
  return `${g.type}/${g.id}`;
}

export function formatSnapshotRef(s: SnapshotRef): string {
  return `${s.type}/${s.id}/${formatBackupTime(s.time)}`;
}

const REF_HELP = 'expected TYPE/ID/TIME, e.g. vm/100/2024-06-05T10:20:30Z';

export function parseGroupRef(s: string): GroupRef {
  const parts = s.split('/');
  if (parts.length !== 2) throw new UsageError(`not a backup group: ${JSON.stringify(s)} (expected TYPE/ID, e.g. vm/100)`);
  return checkGroup(parts[0]!, parts[1]!, s);
}

function checkGroup(type: string, id: string, whole: string): GroupRef {
  if (!isBackupType(type)) {
    throw new UsageError(`bad backup type ${JSON.stringify(type)} in ${JSON.stringify(whole)}: must be vm, ct or host`);
  }
  if (!isValidBackupId(id)) {
    throw new UsageError(
      `bad backup id ${JSON.stringify(id)} in ${JSON.stringify(whole)}: use letters, digits, '_', '.', '-' (not starting with '.' or '-')`,
    );
  }
  return { type, id };
}

/** Parses `TYPE/ID/RFC3339` (`Z` or an offset such as `+00:00`; normalised to UTC). */
export function parseSnapshotRef(s: string): SnapshotRef {
  const parts = s.split('/');
  if (parts.length !== 3) throw new UsageError(`not a snapshot: ${JSON.stringify(s)} (${REF_HELP})`);
  const g = checkGroup(parts[0]!, parts[1]!, s);
  const time = parseTime(parts[2]!);
  if (time === undefined || time < 1) {
    throw new UsageError(`bad snapshot time ${JSON.stringify(parts[2])} in ${JSON.stringify(s)} (${REF_HELP})`);
  }
  return { ...g, time };
}

/** Parses `a/b/c` (or '' / '/' for the root namespace) into components. */
export function parseNamespace(s: string): Namespace {
  const trimmed = s.replace(/^\/+|\/+$/g, '');
  if (trimmed === '') return [];
  if (trimmed.length > MAX_NAMESPACE_LENGTH) {
    throw new UsageError(`namespace ${JSON.stringify(s.slice(0, 60))}… is longer than ${MAX_NAMESPACE_LENGTH} characters`);
  }
  const parts = trimmed.split('/');
  if (parts.length > MAX_NAMESPACE_DEPTH) {
    throw new UsageError(`namespace ${JSON.stringify(s)} is deeper than ${MAX_NAMESPACE_DEPTH} levels`);
  }
  for (const p of parts) {
    if (!isValidBackupId(p)) throw new UsageError(`bad namespace component ${JSON.stringify(p)} in ${JSON.stringify(s)}`);
  }
  return parts;
}

export function formatNamespace(ns: Namespace): string {
  return ns.join('/');
}

/** Relative directory of a namespace inside the datastore: `ns/a/ns/b` ('' for the root). */
export function namespaceRelPath(ns: Namespace): string {
  return ns.map((c) => `ns/${c}`).join('/');
}

export function groupRelPath(ns: Namespace, g: GroupRef): string {
  const base = namespaceRelPath(ns);
  return `${base ? base + '/' : ''}${g.type}/${g.id}`;
}

export function snapshotRelPath(ns: Namespace, s: SnapshotRef): string {
  return `${groupRelPath(ns, s)}/${formatBackupTime(s.time)}`;
}

/** Orders groups as upstream lists them: by type (ct < host < vm), then id. */
export function compareGroups(a: GroupRef, b: GroupRef): number {
  if (a.type !== b.type) return BACKUP_TYPES.indexOf(a.type) - BACKUP_TYPES.indexOf(b.type);
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}
