/**
 * A bounded cache that approximates LRU with two generations: new entries go into the young
 * map; when it is half the bound, it becomes the old map (the previous old one is dropped) and a
 * new young map starts; a hit in the old map moves the entry back to the young one. Every
 * operation is a Map operation or two, with no list to maintain.
 *
 * Why: the VFS node cache takes one entry per listed name (100,000 in a tree walk of the bench
 * archive), and lru-cache's bookkeeping per insert-with-eviction costs several times more than
 * two Map operations (docs/performance.md).
 */
export class TwoGenerationCache<K, V> {
  private young = new Map<K, V>();
  private old = new Map<K, V>();
  private readonly half: number;

  constructor(max: number) {
    this.half = Math.max(1, Math.floor(max / 2));
  }

  /** Entries held (at most the bound given). */
  get size(): number {
    return this.young.size + this.old.size;
  }

  get(key: K): V | undefined {
    const v = this.young.get(key);
    if (v !== undefined) return v;
    const o = this.old.get(key);
    if (o !== undefined) {
      this.old.delete(key);
      this.set(key, o);
    }
    return o;
  }

  set(key: K, value: V): void {
    if (!this.young.has(key) && this.young.size >= this.half) {
      this.old = this.young;
      this.young = new Map();
    }
    this.old.delete(key);
    this.young.set(key, value);
  }
}
