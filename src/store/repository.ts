/**
 * The repository interface: what every layer above the store sees of a backend (a datastore
 * directory, a PBS server, an S3 bucket). Listings say what the backend knows cheaply; reading
 * goes through an opened snapshot, because on a PBS server a chunk may only be fetched inside
 * the reader session that downloaded the index naming it, so the chunk store belongs to the
 * opened snapshot, not to the repository.
 */
import type { ChunkStore } from './chunk-store.js';
import type { GroupRef, Namespace, SnapshotRef } from './backup-ref.js';

/** Crypt mode of a file as a listing reports it (the manifest's values). */
export type ListedCryptMode = 'none' | 'encrypt' | 'sign-only';

export interface GroupInfo extends GroupRef {
  ns: Namespace;
  /** Newest snapshot's time (epoch seconds), when the listing reports it. */
  lastBackup?: number;
  /** Number of snapshots, when the listing reports it. */
  backupCount?: number;
  owner?: string;
  comment?: string;
}

/** One file of a snapshot as a listing reports it; size and crypt mode only when known. */
export interface ListedFile {
  filename: string;
  cryptMode?: ListedCryptMode;
  size?: number;
}

export interface SnapshotInfo extends SnapshotRef {
  ns: Namespace;
  /** False when the snapshot has no index.json.blob (backup running or aborted). */
  complete: boolean;
  /** Archive files of the snapshot (validated names), sorted. */
  files: string[];
  /**
   * What the listing knows per file (a PBS server reports crypt mode and size from the
   * manifest); absent when the backend lists names only.
   */
  fileInfo?: ListedFile[];
  /** Sum of the file sizes, when the listing knows them. */
  size?: number;
  /** Full key fingerprint (`aa:bb:…`) the listing reports from the manifest. */
  fingerprint?: string;
  protected?: boolean;
  /** First line of the snapshot notes. */
  comment?: string;
  owner?: string;
  verification?: { upid: string; state: string };
}

/** Called for every directory entry (or listed item) that was ignored, with the reason. */
export type SkipReporter = (relPath: string, reason: string) => void;

/**
 * One snapshot opened for reading. Files are read whole and bounded; chunks only through
 * `chunkStore`, which is valid until close().
 */
export interface SnapshotSource {
  /** Datastore-relative snapshot path, for messages (`ns/a/host/h/2024-…Z`). */
  readonly path: string;
  /**
   * A whole file of the snapshot (`index.json.blob`, `*.fidx`, `*.didx`, `*.blob`), refusing
   * anything larger than `maxBytes`. Throws NotFoundError when the snapshot lacks the file.
   */
  readFile(name: string, maxBytes: number): Promise<Buffer>;
  /** Raw chunks of the archives of this snapshot (verification is the chunk reader's job). */
  readonly chunkStore: ChunkStore;
  /** Ends whatever the source holds (a reader session); reads after close() fail. */
  close(): Promise<void>;
}

export type RepositoryKind = 'local' | 'pbs' | 's3';

export interface Repository {
  readonly kind: RepositoryKind;
  /** Shown in messages and reports: the datastore path, `host:port:store`, `s3://bucket/store`. */
  readonly name: string;
  /** Child namespaces of `parent` (recursively, up to the depth limit), `parent` itself excluded. */
  listNamespaces(parent?: Namespace, onSkip?: SkipReporter): Promise<Namespace[]>;
  /** Backup groups in one namespace, ordered ct < host < vm, then by id. */
  listGroups(ns?: Namespace, onSkip?: SkipReporter): Promise<GroupInfo[]>;
  /**
   * Snapshots of one group (or of every group of the namespace), oldest first within a group.
   * A named group that does not exist is a NotFoundError.
   */
  listSnapshots(ns?: Namespace, group?: GroupRef, onSkip?: SkipReporter): Promise<SnapshotInfo[]>;
  /**
   * Opens a snapshot for reading. Throws NotFoundError when the snapshot does not exist; an
   * existing snapshot without a manifest opens, and reading index.json.blob then fails with
   * NotFoundError.
   */
  openSnapshot(ns: Namespace, ref: SnapshotRef): Promise<SnapshotSource>;
  /** Closes every open snapshot source and connection. */
  close(): Promise<void>;
}

/** One file of a snapshot, read through a source opened for just that read. */
export async function readSnapshotFileOnce(
  repo: Repository,
  ns: Namespace,
  ref: SnapshotRef,
  name: string,
  maxBytes: number,
): Promise<Buffer> {
  const source = await repo.openSnapshot(ns, ref);
  try {
    return await source.readFile(name, maxBytes);
  } finally {
    await source.close();
  }
}
