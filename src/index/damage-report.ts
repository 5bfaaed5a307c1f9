/**
 * What `--allow-damaged` read as zeros: one entry per unreadable chunk of an index archive (a
 * missing chunk file, a failed digest/CRC/GCM check, an undecodable blob, a media error), with
 * the byte range of the archive stream it covered. Filled by IndexReadAt when it is given a
 * report; read by the CLI at the end of a command (or live, through `onDamage`, by the mount).
 */
import type { ErrorKind, PbsfsError } from '../errors.js';

export interface DamageEntry {
  /** Server file name of the archive, e.g. `root.ppxar.didx`. */
  archive: string;
  /** Datastore-relative path of the index file (snapshot directory + archive). */
  file: string;
  /** Chunk number inside the index. */
  chunk: number;
  /** Byte range [start, end) of the archive stream that read as zeros. */
  start: number;
  end: number;
  /** Chunk digest (hex). */
  digest: string;
  /** The error that made the chunk unreadable (its one-sentence message). */
  reason: string;
  kind: ErrorKind;
}

export class DamageReport {
  private readonly byKey = new Map<string, DamageEntry>();
  /** Entries per index file, sorted by start when `sorted` (chunks of one index never overlap). */
  private readonly byFile = new Map<string, { list: DamageEntry[]; sorted: boolean }>();
  private totalBytes = 0;

  constructor(
    /** Called once per new entry, as it happens (the mount logs each one). */
    public onDamage?: (entry: DamageEntry) => void,
  ) {}

  /** Records a zero-filled chunk; returns false when it was already recorded. */
  record(file: string, archive: string, chunk: number, start: number, end: number, digest: string, error: PbsfsError): boolean {
    const key = `${file}\0${chunk}`;
    if (this.byKey.has(key)) return false;
    const entry: DamageEntry = { archive, file, chunk, start, end, digest, reason: error.message, kind: error.kind };
    this.byKey.set(key, entry);
    let f = this.byFile.get(file);
    if (f === undefined) this.byFile.set(file, (f = { list: [], sorted: true }));
    f.list.push(entry);
    f.sorted = false;
    this.totalBytes += end - start;
    this.onDamage?.(entry);
    return true;
  }

  /** True when chunk `chunk` of index `file` has been read as zeros. */
  has(file: string, chunk: number): boolean {
    return this.byKey.has(`${file}\0${chunk}`);
  }

  /** Entries that overlap [start, end) of the stream of index `file`. */
  overlapping(file: string, start: number, end: number): DamageEntry[] {
    const f = this.byFile.get(file);
    if (f === undefined || end <= start) return [];
    if (!f.sorted) {
      f.list.sort((x, y) => x.start - y.start);
      f.sorted = true;
    }
    // First entry ending after `start` (binary search), then every one starting before `end`.
    let lo = 0;
    let hi = f.list.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (f.list[mid]!.end <= start) lo = mid + 1;
      else hi = mid;
    }
    const out: DamageEntry[] = [];
    for (let i = lo; i < f.list.length && f.list[i]!.start < end; i++) out.push(f.list[i]!);
    return out;
  }

  /** All entries, by archive and chunk. */
  entries(): DamageEntry[] {
    return [...this.byKey.values()].sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : a.chunk - b.chunk));
  }

  /** Number of zero-filled chunks. */
  get count(): number {
    return this.byKey.size;
  }

  /** Archive bytes read as zeros. */
  get bytes(): number {
    return this.totalBytes;
  }
}

/** One line per entry: where, which chunk, what range, why. */
export function formatDamageEntry(e: DamageEntry): string {
  return `${e.file}: chunk ${e.chunk} bytes ${e.start}..${e.end} (digest ${e.digest}) read as zeros: ${e.reason}`;
}
