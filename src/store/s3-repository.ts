/**
 * The S3 backend of the Repository interface: a PBS 4 datastore kept in a bucket, read straight
 * from the bucket (no PBS host needed). The store's `.cnt/` prefix is listed once per process,
 * with ListObjectsV2 and no delimiter, as PBS itself refreshes its cache; snapshot files are
 * `GET .cnt/<snapshot>/<file>`, chunks `GET .chunks/XXXX/<digest>`.
 *
 * Read-only by construction: S3Client sends only GET and HEAD. `.in-use` is read when listing
 * the stores of a bucket, never written.
 */
import { FormatError, NotFoundError, UsageError } from '../errors.js';
import {
  compareGroups,
  formatNamespace,
  formatSnapshotRef,
  isValidArchiveFileName,
  isValidBackupId,
  snapshotRelPath,
  type GroupRef,
  type Namespace,
  type SnapshotRef,
} from './backup-ref.js';
import type { GroupInfo, Repository, SkipReporter, SnapshotInfo, SnapshotSource } from './repository.js';
import { S3ChunkStore } from './s3-chunk-store.js';
import { S3Client, type S3ClientOptions } from './s3-client.js';
import { resolveS3Config, type S3Options } from './s3-config.js';
import { ContentTree, IN_USE_MARKER, contentKey, contentPrefix } from './s3-layout.js';

const MANIFEST = 'index.json.blob';
/** `.in-use` is `{"hostname":"…"}`; anything longer is not PBS's marker. */
const MAX_IN_USE_BYTES = 4096;
/** Most top-level prefixes looked at when listing the stores of a bucket. */
const MAX_STORES_LISTED = 1000;

export interface FoundStore {
  name: string;
  /** Host named by `<store>/.in-use`, when the marker is there and readable. */
  inUseBy?: string;
  /** True when `.in-use` is there. */
  marked: boolean;
}

/**
 * The datastores in a bucket: each top-level prefix with an `.in-use` marker, a `.cnt/` or a
 * `.chunks/` below it. Walks the top-level prefixes with one-key listings and start-after (no
 * delimiter listings: some S3 servers get those wrong).
 */
export async function findStores(client: S3Client): Promise<{ stores: FoundStore[]; others: string[] }> {
  const stores: FoundStore[] = [];
  const others: string[] = [];
  let after: string | undefined;
  for (let n = 0; n < MAX_STORES_LISTED; n++) {
    let first: string | undefined;
    for await (const o of client.list('', { maxKeys: 1, ...(after !== undefined ? { startAfter: after } : {}) })) {
      first = o.key;
      break;
    }
    if (first === undefined) break;
    const slash = first.indexOf('/');
    if (slash <= 0) {
      others.push(first);
      after = first;
      continue;
    }
    const name = first.slice(0, slash);
    // Past every key that starts with `name/`: U+10FFFF sorts after any character S3 allows.
    after = `${name}/\u{10FFFF}`;
    if (!isValidBackupId(name)) {
      others.push(`${name}/`);
      continue;
    }
    const store = await describeStore(client, name);
    if (store) stores.push(store);
    else others.push(`${name}/`);
  }
  return { stores, others };
}

async function describeStore(client: S3Client, name: string): Promise<FoundStore | undefined> {
  let raw: Buffer | undefined;
  try {
    raw = await client.get(`${name}/${IN_USE_MARKER}`, { maxBytes: MAX_IN_USE_BYTES });
  } catch (e) {
    if (!(e instanceof NotFoundError)) throw e;
  }
  if (raw !== undefined) {
    let host: string | undefined;
    try {
      const v = JSON.parse(raw.toString('utf8')) as { hostname?: unknown };
      if (typeof v.hostname === 'string') host = v.hostname.replace(/[^\x20-\x7e]/g, '?').slice(0, 253);
    } catch {
      host = undefined;
    }
    return { name, marked: true, ...(host !== undefined ? { inUseBy: host } : {}) };
  }
  for (const sub of ['.cnt/', '.chunks/']) {
    for await (const _ of client.list(`${name}/${sub}`, { maxKeys: 1 })) return { name, marked: false };
  }
  return undefined;
}

export interface S3RepositoryOptions extends S3Options {
  client?: S3ClientOptions;
  env?: NodeJS.ProcessEnv;
}

export class S3Repository implements Repository {
  readonly kind = 's3' as const;
  readonly name: string;
  readonly chunkStore: S3ChunkStore;
  private tree: Promise<ContentTree> | undefined;

  private constructor(
    readonly client: S3Client,
    readonly store: string,
  ) {
    this.name = `s3://${client.bucket}/${store}`;
    this.chunkStore = new S3ChunkStore(client, store);
  }

  /**
   * Opens `s3://BUCKET/STORE`. The store must show in the bucket (an `.in-use` marker, or objects
   * under `.cnt/` or `.chunks/`); `s3://BUCKET` alone is refused with the stores found in it.
   */
  static async open(url: string, opts: S3RepositoryOptions = {}): Promise<S3Repository> {
    const config = resolveS3Config(url, opts, opts.env);
    const client = new S3Client(config, opts.client);
    const store = config.location.store;
    if (store === undefined) throw await pickStoreError(client);
    if ((await describeStore(client, store)) === undefined) {
      const { stores } = await findStores(client);
      const known = stores.length ? `; the bucket holds ${stores.map((s) => s.name).join(', ')}` : '; the bucket holds no datastore';
      throw new NotFoundError(`no datastore ${JSON.stringify(store)} in bucket ${config.location.bucket}${known}`, { file: `s3://${config.location.bucket}/${store}` });
    }
    return new S3Repository(client, store);
  }

  /** The `.cnt/` listing, read once. */
  private content(): Promise<ContentTree> {
    this.tree ??= (async () => {
      const tree = new ContentTree();
      const prefix = contentPrefix(this.store);
      for await (const o of this.client.list(prefix)) tree.add(o.key.slice(prefix.length));
      return tree.finish();
    })();
    // A failed listing (network) may be retried by the next call.
    this.tree.catch(() => (this.tree = undefined));
    return this.tree;
  }

  async listNamespaces(parent: Namespace = [], onSkip?: SkipReporter): Promise<Namespace[]> {
    const tree = await this.content();
    const base = formatNamespace(parent);
    const inside = (ns: string): boolean => (base === '' ? ns !== '' : ns.startsWith(`${base}/`));
    for (const s of tree.skipped) if (s.inNamespacePath && (s.ns === base || inside(s.ns))) onSkip?.(s.rel, s.reason);
    return [...tree.namespaces.values()]
      .map((n) => n.ns)
      .filter((ns) => inside(formatNamespace(ns)))
      .sort(compareNamespaces);
  }

  async listGroups(ns: Namespace = [], onSkip?: SkipReporter): Promise<GroupInfo[]> {
    const tree = await this.content();
    const key = formatNamespace(ns);
    for (const s of tree.skipped) if (s.ns === key && s.group === undefined && !s.inNamespacePath) onSkip?.(s.rel, s.reason);
    const n = tree.namespaces.get(key);
    if (!n) return [];
    return [...n.groups.values()].map((g): GroupInfo => ({ ns, type: g.type, id: g.id })).sort(compareGroups);
  }

  async listSnapshots(ns: Namespace = [], group?: GroupRef, onSkip?: SkipReporter): Promise<SnapshotInfo[]> {
    const tree = await this.content();
    const nsKey = formatNamespace(ns);
    const groups = group ? [group] : await this.listGroups(ns, onSkip);
    const out: SnapshotInfo[] = [];
    for (const g of groups) {
      const gKey = `${g.type}/${g.id}`;
      const listed = tree.namespaces.get(nsKey)?.groups.get(gKey);
      // A named group that is not there lists as empty, as in a datastore directory.
      if (!listed) continue;
      for (const s of tree.skipped) if (s.ns === nsKey && s.group === gKey) onSkip?.(s.rel, s.reason);
      const snaps = [...listed.snapshots.entries()].map(
        ([time, s]): SnapshotInfo => ({ type: g.type, id: g.id, time, ns, complete: s.files.includes(MANIFEST), files: [...s.files] }),
      );
      out.push(...snaps.sort((a, b) => a.time - b.time));
    }
    return out;
  }

  async openSnapshot(ns: Namespace, ref: SnapshotRef): Promise<SnapshotSource> {
    const tree = await this.content();
    const g = tree.namespaces.get(formatNamespace(ns))?.groups.get(`${ref.type}/${ref.id}`);
    if (!g?.snapshots.has(ref.time)) {
      const where = ns.length ? ` in namespace ${ns.join('/')}` : '';
      throw new NotFoundError(`no such snapshot${where} in ${this.name}`, { file: formatSnapshotRef(ref), errorCode: 'snapshot-not-found' });
    }
    const dir = snapshotRelPath(ns, ref);
    return {
      path: dir,
      readFile: (name, maxBytes) => this.readSnapshotFile(dir, name, maxBytes),
      chunkStore: this.chunkStore,
      close: async () => {},
    };
  }

  /** Every request is complete when it returns; there is nothing to close. */
  async close(): Promise<void> {}

  private async readSnapshotFile(dir: string, name: string, maxBytes: number): Promise<Buffer> {
    if (!isValidArchiveFileName(name)) throw new FormatError(`not a valid archive file name: ${JSON.stringify(name)}`);
    const rel = `${dir}/${name}`;
    const key = contentKey(this.store, rel);
    try {
      return await this.client.get(key, { maxBytes });
    } catch (e) {
      if (e instanceof NotFoundError && e.file === this.client.where(key)) {
        throw new NotFoundError('file is missing from the snapshot', { file: rel, cause: e });
      }
      throw e;
    }
  }
}

/** The error for `s3://BUCKET` without a store: which stores there are and how to pick one. */
async function pickStoreError(client: S3Client): Promise<UsageError> {
  const { stores } = await findStores(client);
  const bucket = client.bucket;
  if (stores.length === 0) return new UsageError(`s3://${bucket} names a bucket without a datastore in it; give s3://${bucket}/STORE`);
  const list = stores.map((s) => (s.inUseBy ? `${s.name} (in use by ${s.inUseBy})` : s.name)).join(', ');
  return new UsageError(`s3://${bucket} names a bucket, not a datastore; it holds: ${list}. Pick one with --repository s3://${bucket}/${stores[0]!.name}`);
}

/** Depth-first order by component, as a directory walk lists namespaces. */
function compareNamespaces(a: Namespace, b: Namespace): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    if (a[i] !== b[i]) return a[i]! < b[i]! ? -1 : 1;
  }
  return a.length - b.length;
}
