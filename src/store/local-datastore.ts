/**
 * The local backend of the Repository interface: a PBS datastore directory, opened read-only: namespaces, groups, snapshots and snapshot files
 * (spec 9). Directory contents are not trusted: every name is checked against the naming rules
 * before it is joined to a path; anything else (hostile names, symlinks, `*.tmp_*`, `.bad`,
 * unknown dot files) is skipped and reported through `onSkip`, never followed.
 */
import { readFully } from '../io/read-at.js';
import { lstat, open, readdir, stat } from 'node:fs/promises';
import { constants, type Dirent } from 'node:fs';
import { join, resolve } from 'node:path';
import { FormatError, LimitError, NotFoundError, fromSystemError } from '../errors.js';
import {
  BACKUP_TYPES,
  MAX_NAMESPACE_DEPTH,
  compareGroups,
  formatSnapshotRef,
  groupRelPath,
  isBackupType,
  isValidArchiveFileName,
  isValidBackupId,
  namespaceRelPath,
  parseSnapshotDirName,
  snapshotRelPath,
  type GroupRef,
  type Namespace,
  type SnapshotRef,
} from './backup-ref.js';
import { LocalChunkStore } from './local-chunk-store.js';
import type { GroupInfo, Repository, SkipReporter, SnapshotInfo, SnapshotSource } from './repository.js';

const MANIFEST = 'index.json.blob';

export class LocalDatastore implements Repository {
  readonly kind = 'local' as const;
  readonly name: string;
  /** One chunk store for every snapshot: snapshots share chunks, so they share its cache too. */
  readonly chunkStore: LocalChunkStore;

  private constructor(readonly root: string) {
    this.name = root;
    this.chunkStore = new LocalChunkStore(root);
  }

  /** Opens a datastore directory (must contain `.chunks/`); nothing is created or locked. */
  static async open(path: string): Promise<LocalDatastore> {
    const root = resolve(path);
    try {
      const st = await stat(root);
      if (!st.isDirectory()) throw new FormatError('not a directory', { file: root });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new NotFoundError('datastore directory does not exist', { file: root, cause: e, errorCode: 'datastore-not-found' });
      }
      throw fromSystemError(e, root, 'cannot open datastore');
    }
    try {
      const chunks = await stat(join(root, '.chunks'));
      if (!chunks.isDirectory()) throw new Error('not a directory');
    } catch (e) {
      throw new FormatError('not a PBS datastore (no .chunks directory)', { file: root, cause: e });
    }
    return new LocalDatastore(root);
  }

  /** Absolute path of a datastore-relative path built from validated names. */
  abs(rel: string): string {
    return rel === '' ? this.root : join(this.root, rel);
  }

  /**
   * True unless a component of `rel` is a symbolic link. Names read from directory entries are
   * checked as they are read, but fixed names (`ns`, `vm`, `ct`, `host`) and names given on the
   * command line are not: a link there (say `ns -> ../..`) would walk us out of the datastore.
   */
  private async withoutSymlinks(rel: string): Promise<boolean> {
    let p = this.root;
    for (const c of rel.split('/')) {
      if (c === '') continue;
      p = join(p, c);
      try {
        if ((await lstat(p)).isSymbolicLink()) return false;
      } catch {
        return true; // missing: readdir reports it
      }
    }
    return true;
  }

  private async list(rel: string, missingOk: boolean): Promise<Dirent[]> {
    if (!(await this.withoutSymlinks(rel))) {
      if (missingOk) return [];
      throw new FormatError('is or passes through a symbolic link; links inside a datastore are not followed', { file: rel });
    }
    try {
      return await readdir(this.abs(rel), { withFileTypes: true });
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (missingOk && (code === 'ENOENT' || code === 'ENOTDIR')) return [];
      if (code === 'ENOENT') throw new NotFoundError('no such directory in the datastore', { file: rel || '.', cause: e });
      throw fromSystemError(e, rel || '.', 'cannot list');
    }
  }

  /** Child namespaces of `parent` (recursively, up to the depth limit), parent first excluded. */
  async listNamespaces(parent: Namespace = [], onSkip?: SkipReporter): Promise<Namespace[]> {
    const out: Namespace[] = [];
    const walk = async (ns: Namespace): Promise<void> => {
      if (ns.length >= MAX_NAMESPACE_DEPTH) return;
      const base = namespaceRelPath(ns);
      const rel = base ? `${base}/ns` : 'ns';
      for (const d of sortByName(await this.list(rel, true))) {
        if (!d.isDirectory() || !isValidBackupId(d.name)) {
          onSkip?.(`${rel}/${d.name}`, d.isDirectory() ? 'not a valid namespace name' : 'not a directory');
          continue;
        }
        const child = [...ns, d.name];
        out.push(child);
        await walk(child);
      }
    };
    await walk(parent);
    return out;
  }

  /** Backup groups in one namespace, ordered ct < host < vm, then by id. */
  async listGroups(ns: Namespace = [], onSkip?: SkipReporter): Promise<GroupInfo[]> {
    const base = namespaceRelPath(ns);
    const groups: GroupInfo[] = [];
    for (const type of BACKUP_TYPES) {
      const rel = base ? `${base}/${type}` : type;
      for (const d of await this.list(rel, true)) {
        if (!d.isDirectory() || !isValidBackupId(d.name)) {
          onSkip?.(`${rel}/${d.name}`, d.isDirectory() ? 'not a valid backup id' : 'not a directory');
          continue;
        }
        groups.push({ ns, type, id: d.name });
      }
    }
    return groups.sort(compareGroups);
  }

  /**
   * Snapshots of one group (or of every group in the namespace), oldest first. A directory
   * without a manifest is listed with complete = false.
   */
  async listSnapshots(ns: Namespace = [], group?: GroupRef, onSkip?: SkipReporter): Promise<SnapshotInfo[]> {
    const groups = group ? [{ ...group, ns }] : await this.listGroups(ns, onSkip);
    const out: SnapshotInfo[] = [];
    for (const g of groups) {
      if (!isBackupType(g.type) || !isValidBackupId(g.id)) continue;
      const rel = groupRelPath(ns, g);
      const snaps: SnapshotInfo[] = [];
      for (const d of await this.list(rel, group !== undefined)) {
        if (!d.isDirectory()) {
          if (d.name !== 'owner' && d.name !== 'notes') onSkip?.(`${rel}/${d.name}`, 'unexpected file in a group');
          continue;
        }
        const time = parseSnapshotDirName(d.name);
        if (time === undefined) {
          onSkip?.(`${rel}/${d.name}`, 'not a snapshot directory name');
          continue;
        }
        const ref: SnapshotRef = { type: g.type, id: g.id, time };
        const files = await this.listSnapshotFiles(ns, ref, onSkip);
        snaps.push({ ...ref, ns, complete: files.includes(MANIFEST), files });
      }
      out.push(...snaps.sort((a, b) => a.time - b.time));
    }
    return out;
  }

  /** Archive files (`*.blob`, `*.fidx`, `*.didx`, regular files with safe names) of a snapshot. */
  async listSnapshotFiles(ns: Namespace, ref: SnapshotRef, onSkip?: SkipReporter): Promise<string[]> {
    const rel = snapshotRelPath(ns, ref);
    const files: string[] = [];
    for (const d of await this.list(rel, false)) {
      if (d.isFile() && isValidArchiveFileName(d.name)) {
        files.push(d.name);
        continue;
      }
      // Expected extras that are not archives; transient and quarantine files are ignored quietly.
      if (d.name === '.protected' || d.name.includes('.tmp_') || d.name.endsWith('.bad')) continue;
      onSkip?.(`${rel}/${d.name}`, 'not an archive file');
    }
    return files.sort();
  }

  /** Opens a snapshot directory; files are read with readSnapshotFile, chunks from `.chunks/`. */
  async openSnapshot(ns: Namespace, ref: SnapshotRef): Promise<SnapshotSource> {
    if (!(await this.hasSnapshot(ns, ref))) {
      const where = ns.length ? ` in namespace ${ns.join('/')}` : '';
      throw new NotFoundError(`no such snapshot${where}`, { file: formatSnapshotRef(ref), errorCode: 'snapshot-not-found' });
    }
    return {
      path: snapshotRelPath(ns, ref),
      readFile: (name, maxBytes) => this.readSnapshotFile(ns, ref, name, maxBytes),
      chunkStore: this.chunkStore,
      close: async () => {},
    };
  }

  /** Nothing to close: every file is opened and closed per read. */
  async close(): Promise<void> {}

  /** Whether a snapshot directory exists (complete or not). */
  async hasSnapshot(ns: Namespace, ref: SnapshotRef): Promise<boolean> {
    const rel = snapshotRelPath(ns, ref);
    if (!(await this.withoutSymlinks(rel))) return false;
    try {
      return (await stat(this.abs(rel))).isDirectory();
    } catch {
      return false;
    }
  }

  /**
   * Reads a whole file of a snapshot, read-only, refusing anything larger than `maxBytes`.
   * `name` must be a validated archive file name.
   */
  async readSnapshotFile(ns: Namespace, ref: SnapshotRef, name: string, maxBytes: number): Promise<Buffer> {
    if (!isValidArchiveFileName(name)) throw new FormatError(`not a valid archive file name: ${JSON.stringify(name)}`);
    const rel = `${snapshotRelPath(ns, ref)}/${name}`;
    if (!(await this.withoutSymlinks(snapshotRelPath(ns, ref)))) {
      throw new FormatError('the snapshot directory is or passes through a symbolic link; links inside a datastore are not followed', { file: rel });
    }
    let fh;
    try {
      // O_NOFOLLOW: PBS never symlinks snapshot files; a symlink here could point anywhere.
      fh = await open(this.abs(rel), constants.O_RDONLY | constants.O_NOFOLLOW);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new NotFoundError('file is missing from the snapshot', { file: rel, cause: e });
      }
      throw fromSystemError(e, rel, 'cannot open');
    }
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new FormatError('not a regular file', { file: rel });
      if (st.size > maxBytes) throw new LimitError(`file is ${st.size} bytes, more than the ${maxBytes}-byte limit`, { file: rel });
      const buf = Buffer.allocUnsafeSlow(st.size);
      return await readFully(fh, buf);
    } catch (e) {
      throw fromSystemError(e, rel, 'cannot read');
    } finally {
      await fh.close();
    }
  }
}

function sortByName(d: Dirent[]): Dirent[] {
  return d.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

