/**
 * The PBS server backend of the Repository interface: listings through the REST API
 * (`/api2/json/admin/datastore/{store}/…`), snapshots read through one reader session each
 * (opened when the snapshot is opened, reconnected when it was closed while idle). Everything
 * the server says is checked as a local directory's entries are: names against the naming
 * rules, numbers for range; what does not fit is skipped and reported, never used.
 */
import { FormatError, NotFoundError } from '../errors.js';
import {
  MAX_NAMESPACE_DEPTH,
  compareGroups,
  formatNamespace,
  groupRelPath,
  isBackupType,
  isValidArchiveFileName,
  isValidBackupId,
  snapshotRelPath,
  type GroupRef,
  type Namespace,
  type SnapshotRef,
} from './backup-ref.js';
import type { ChunkStore } from './chunk-store.js';
import { formatPbsAddress, parsePbsAddress } from './pbs/address.js';
import { PbsClient } from './pbs/client.js';
import { pinnedFingerprint, secretReader, timeoutsFromEnv } from './pbs/credentials.js';
import { DEFAULT_SESSION_OPTIONS, ReaderSession, type ReaderSessionOptions } from './pbs/reader-session.js';
import type { GroupInfo, ListedCryptMode, ListedFile, Repository, SkipReporter, SnapshotInfo, SnapshotSource } from './repository.js';

const MANIFEST = 'index.json.blob';
const CRYPT_MODES: readonly ListedCryptMode[] = ['none', 'encrypt', 'sign-only'];

export interface PbsRepositoryOptions {
  fingerprint?: string;
  env?: NodeJS.ProcessEnv;
  /** CA certificates trusted instead of the system's. */
  ca?: string | Buffer;
  /** The password or token secret, already read (a mount daemon gets it from its parent). */
  secret?: string;
  /** Whether a password may be asked on the terminal (default: stdin is a TTY). */
  interactive?: boolean;
  session?: Partial<ReaderSessionOptions>;
}

type Json = Record<string, unknown>;

function isRecord(v: unknown): v is Json {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function isEpoch(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** The chunks of one reader session. */
class SessionChunkStore implements ChunkStore {
  constructor(
    readonly name: string,
    private readonly session: ReaderSession,
  ) {}
  get(digest: Buffer): Promise<Buffer> {
    return this.session.chunk(digest);
  }
}

export class PbsRepository implements Repository {
  readonly kind = 'pbs' as const;
  readonly name: string;
  private readonly sessions = new Set<ReaderSession>();

  private constructor(
    private readonly client: PbsClient,
    private readonly sessionOptions: ReaderSessionOptions,
  ) {
    this.name = formatPbsAddress(client.address);
  }

  /** Parses the repository string and checks the settings; connects on first use. */
  static async open(spec: string, opts: PbsRepositoryOptions = {}): Promise<PbsRepository> {
    const env = opts.env ?? process.env;
    const address = parsePbsAddress(spec);
    const fingerprint = await pinnedFingerprint(opts.fingerprint, env);
    const client = new PbsClient({
      address,
      secret: opts.secret !== undefined ? async () => opts.secret! : secretReader(address.authId, env, opts.interactive ?? process.stdin.isTTY === true),
      ...(fingerprint !== undefined ? { fingerprint } : {}),
      ...(opts.ca !== undefined ? { ca: opts.ca } : {}),
      timeouts: timeoutsFromEnv(env),
    });
    return new PbsRepository(client, { ...DEFAULT_SESSION_OPTIONS, ...opts.session });
  }

  private get storePath(): string {
    return `/admin/datastore/${encodeURIComponent(this.client.address.store)}`;
  }

  private async getList(path: string, query: Record<string, string | number | undefined>): Promise<unknown[]> {
    const data = await this.client.getJson(`${this.storePath}${path}`, query);
    if (!Array.isArray(data)) throw new FormatError(`${this.client.server}: the answer to ${path} is not a list`);
    return data;
  }

  async listNamespaces(parent: Namespace = [], onSkip?: SkipReporter): Promise<Namespace[]> {
    if (parent.length >= MAX_NAMESPACE_DEPTH) return [];
    let items: unknown[];
    try {
      items = await this.getList('/namespace', {
        parent: parent.length > 0 ? formatNamespace(parent) : undefined,
        'max-depth': MAX_NAMESPACE_DEPTH - parent.length,
      });
    } catch (e) {
      // A server older than namespaces has only the root one (upstream sync falls back the same way).
      if (e instanceof NotFoundError && parent.length === 0 && /Path .* not found/.test(e.message)) return [];
      throw e;
    }
    const out: Namespace[] = [];
    const seen = new Set<string>();
    for (const it of items) {
      const s = isRecord(it) && typeof it.ns === 'string' ? it.ns : undefined;
      if (s === undefined) {
        onSkip?.('namespace', 'a listed namespace has no "ns" string');
        continue;
      }
      if (s === formatNamespace(parent)) continue;
      const ns = s.split('/');
      const below = ns.length > parent.length && parent.every((c, i) => ns[i] === c);
      if (!below || ns.length > MAX_NAMESPACE_DEPTH || !ns.every(isValidBackupId) || seen.has(s)) {
        onSkip?.(`ns ${JSON.stringify(s)}`, 'not a valid namespace below the one listed');
        continue;
      }
      seen.add(s);
      out.push(ns);
    }
    // Depth-first, by name at every level: the order a directory walk gives.
    return out.sort(compareNamespaces);
  }

  async listGroups(ns: Namespace = [], onSkip?: SkipReporter): Promise<GroupInfo[]> {
    const items = await this.getList('/groups', { ns: ns.length > 0 ? formatNamespace(ns) : undefined });
    const out: GroupInfo[] = [];
    for (const it of items) {
      const type = isRecord(it) ? it['backup-type'] : undefined;
      const id = isRecord(it) ? it['backup-id'] : undefined;
      if (!isRecord(it) || typeof type !== 'string' || typeof id !== 'string' || !isBackupType(type) || !isValidBackupId(id)) {
        onSkip?.(`group ${JSON.stringify(`${String(type)}/${String(id)}`)}`, 'not a valid backup group');
        continue;
      }
      const g: GroupInfo = { ns, type, id };
      if (isEpoch(it['last-backup'])) g.lastBackup = it['last-backup'];
      if (isEpoch(it['backup-count'])) g.backupCount = it['backup-count'];
      if (typeof it.owner === 'string') g.owner = it.owner;
      if (typeof it.comment === 'string') g.comment = it.comment;
      out.push(g);
    }
    return out.sort(compareGroups);
  }

  async listSnapshots(ns: Namespace = [], group?: GroupRef, onSkip?: SkipReporter): Promise<SnapshotInfo[]> {
    const items = await this.getList('/snapshots', {
      ns: ns.length > 0 ? formatNamespace(ns) : undefined,
      'backup-type': group?.type,
      'backup-id': group?.id,
    });
    const out: SnapshotInfo[] = [];
    for (const it of items) {
      const s = isRecord(it) ? this.snapshotInfo(ns, it, onSkip) : undefined;
      if (s === undefined) {
        if (!isRecord(it)) onSkip?.('snapshot', 'a listed snapshot is not an object');
        continue;
      }
      if (group !== undefined && (s.type !== group.type || s.id !== group.id)) continue;
      out.push(s);
    }
    if (group !== undefined && out.length === 0 && !(await this.hasGroup(ns, group))) {
      throw new NotFoundError(`no such backup group on ${this.name}`, { file: groupRelPath(ns, group) });
    }
    return out.sort((a, b) => compareGroups(a, b) || a.time - b.time);
  }

  private async hasGroup(ns: Namespace, group: GroupRef): Promise<boolean> {
    return (await this.listGroups(ns)).some((g) => g.type === group.type && g.id === group.id);
  }

  private snapshotInfo(ns: Namespace, it: Json, onSkip?: SkipReporter): SnapshotInfo | undefined {
    const type = it['backup-type'];
    const id = it['backup-id'];
    const time = it['backup-time'];
    if (typeof type !== 'string' || !isBackupType(type) || typeof id !== 'string' || !isValidBackupId(id) || !isEpoch(time) || time < 1) {
      onSkip?.(`snapshot ${JSON.stringify(`${String(type)}/${String(id)}/${String(time)}`)}`, 'not a valid snapshot');
      return undefined;
    }
    const ref: SnapshotRef = { type, id, time };
    const fileInfo: ListedFile[] = [];
    for (const f of Array.isArray(it.files) ? it.files : []) {
      const name = isRecord(f) ? f.filename : undefined;
      if (!isRecord(f) || typeof name !== 'string' || !isValidArchiveFileName(name)) {
        onSkip?.(`${snapshotRelPath(ns, ref)}/${String(name)}`, 'not an archive file');
        continue;
      }
      const lf: ListedFile = { filename: name };
      const cm = f['crypt-mode'];
      if (typeof cm === 'string' && (CRYPT_MODES as readonly string[]).includes(cm)) lf.cryptMode = cm as ListedCryptMode;
      if (isEpoch(f.size)) lf.size = f.size;
      fileInfo.push(lf);
    }
    fileInfo.sort((a, b) => (a.filename < b.filename ? -1 : a.filename > b.filename ? 1 : 0));
    const files = fileInfo.map((f) => f.filename);
    // Upstream lists a snapshot without a readable manifest with names only and no size.
    const info: SnapshotInfo = { ...ref, ns, complete: files.includes(MANIFEST) && isEpoch(it.size), files, fileInfo };
    if (isEpoch(it.size)) info.size = it.size;
    if (typeof it.fingerprint === 'string') info.fingerprint = it.fingerprint;
    if (typeof it.protected === 'boolean') info.protected = it.protected;
    if (typeof it.comment === 'string') info.comment = it.comment;
    if (typeof it.owner === 'string') info.owner = it.owner;
    const v = it.verification;
    if (isRecord(v) && typeof v.upid === 'string' && typeof v.state === 'string') info.verification = { upid: v.upid, state: v.state };
    return info;
  }

  async openSnapshot(ns: Namespace, ref: SnapshotRef): Promise<SnapshotSource> {
    const session = new ReaderSession(this.client, ns, ref, this.sessionOptions);
    await session.open();
    this.sessions.add(session);
    const chunkStore = new SessionChunkStore(`${this.name}/${session.path}`, session);
    return {
      path: session.path,
      chunkStore,
      readFile: async (name, maxBytes) => {
        if (!isValidArchiveFileName(name)) throw new FormatError(`not a valid archive file name: ${JSON.stringify(name)}`);
        return session.download(name, maxBytes);
      },
      close: async () => {
        this.sessions.delete(session);
        await session.close();
      },
    };
  }

  async close(): Promise<void> {
    const all = [...this.sessions];
    this.sessions.clear();
    await Promise.allSettled(all.map((s) => s.close()));
  }
}

function compareNamespaces(a: Namespace, b: Namespace): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (x !== y) return x < y ? -1 : 1;
  }
  return a.length - b.length;
}
