/**
 * Read-ahead for directory walks (`find`, `du`, `ls -R`, `cp -r`): once a walk is seen going from
 * one directory to the one predicted after it, the listing of the next predicted directory is
 * prepared while the kernel and the walker are still busy with the current reply, so the next
 * READDIR finds it ready. A walk answers its requests one after another (the walker waits for
 * each reply), so without this the listing work and the walker's own work never overlap.
 *
 * Prediction follows the order walkers use: after listing a directory, its first subdirectory;
 * for a directory without subdirectories, the next directory after it in its parent's listing,
 * or (the last one) after its parent in the grandparent's, and so on up.
 * A single `ls` never triggers read-ahead: only a listing that was itself predicted does (like
 * sequential-read detection for files), and only one directory is prepared ahead.
 */
import { LRUCache } from 'lru-cache';
import type { VfsDirEntry } from './types.js';

/** Recent listings remembered for prediction (node ids of their subdirectories, in order). */
const REMEMBERED_LISTINGS = 64;
/** Subdirectories whose place in their parent's listing is remembered. */
const REMEMBERED_PLACES = 65536;
/** Levels climbed from a finished subtree to find the next directory. */
const MAX_CLIMB = 64;
/** Prepared listings not taken yet (a walk takes each almost at once). */
const PREPARED_LISTINGS = 4;

export class ListingReadAhead {
  private readonly childDirs = new LRUCache<number, number[]>({ max: REMEMBERED_LISTINGS });
  /** Where each subdirectory of a remembered listing stands in it. */
  private readonly places = new LRUCache<number, { parent: number; index: number }>({ max: REMEMBERED_PLACES });
  private readonly prepared = new LRUCache<number, Promise<VfsDirEntry[]>>({ max: PREPARED_LISTINGS });
  private predicted = 0;
  /** Listings prepared ahead, and how many of them a walk then used. */
  readonly counters = { prepared: 0, used: 0 };

  constructor(
    /** Starts listing directory `nodeid` (rejects when it is unknown or unreadable). */
    private readonly list: (nodeid: number) => Promise<VfsDirEntry[]>,
  ) {}

  /** A prepared listing of `nodeid`, taken out (undefined when none is waiting). */
  take(nodeid: number): Promise<VfsDirEntry[]> | undefined {
    const p = this.prepared.get(nodeid);
    if (p === undefined) return undefined;
    this.prepared.delete(nodeid);
    this.counters.used++;
    return p;
  }

  /**
   * Directory `nodeid` was listed; `dirs` are the node ids of its subdirectories in listing
   * order. Prepares the predicted next listing when the walk was predicted so far.
   */
  listed(nodeid: number, dirs: number[]): void {
    this.childDirs.set(nodeid, dirs);
    dirs.forEach((id, index) => this.places.set(id, { parent: nodeid, index }));
    const walking = nodeid === this.predicted;
    this.predicted = this.next(nodeid);
    if (!walking || this.predicted === 0 || this.prepared.has(this.predicted)) return;
    const target = this.predicted;
    // After the current reply is written (the caller's promise settles first).
    setImmediate(() => {
      if (this.prepared.has(target) || this.predicted !== target) return;
      const p = this.list(target);
      this.prepared.set(target, p);
      this.counters.prepared++;
      // A failed read-ahead is forgotten: the walker's own READDIR reports the error.
      p.catch(() => {
        if (this.prepared.get(target) === p) this.prepared.delete(target);
      });
    });
  }

  /** The directory a depth-first walk lists after `nodeid`, or 0 when that is not known. */
  private next(nodeid: number): number {
    const own = this.childDirs.get(nodeid);
    if (own !== undefined && own.length > 0) return own[0]!;
    // The next directory after it in its parent's listing, or after its parent in the
    // grandparent's, and so on up (a depth-first walk returning from a finished subtree).
    let cur = nodeid;
    for (let depth = 0; depth < MAX_CLIMB; depth++) {
      const place = this.places.get(cur);
      const siblings = place !== undefined ? this.childDirs.get(place.parent) : undefined;
      if (place === undefined || siblings === undefined) return 0;
      const after = siblings[place.index + 1];
      if (after !== undefined) return after;
      cur = place.parent;
    }
    return 0;
  }
}
