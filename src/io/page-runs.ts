/**
 * Bookkeeping for memory handed out in whole pages: a sorted list of free runs, best-fit
 * allocation, and freed pages merged with their free neighbours. Used by the memory areas that
 * are carved into blocks and reused (the chunk reader's plaintext arena, the store's O_DIRECT
 * read buffers); they own the memory, this only says which pages are free.
 */
export class PageRuns {
  /** Free runs [firstPage, pages], sorted by first page, never adjacent (merged on free). */
  private readonly runs: [number, number][];
  private used = 0;

  constructor(readonly pages: number) {
    this.runs = pages > 0 ? [[0, pages]] : [];
  }

  /** Pages lent out right now. */
  get usedPages(): number {
    return this.used;
  }

  /** The first page of `need` free pages (best fit, lowest address on ties), or -1. */
  alloc(need: number): number {
    if (!Number.isSafeInteger(need) || need <= 0) return -1;
    let best = -1;
    for (let i = 0; i < this.runs.length; i++) {
      const len = this.runs[i]![1];
      if (len >= need && (best < 0 || len < this.runs[best]![1])) {
        best = i;
        if (len === need) break;
      }
    }
    if (best < 0) return -1;
    const run = this.runs[best]!;
    const first = run[0];
    if (run[1] === need) this.runs.splice(best, 1);
    else {
      run[0] += need;
      run[1] -= need;
    }
    this.used += need;
    return first;
  }

  /** Gives back pages [first, first + pages) taken by alloc(). */
  free(first: number, pages: number): void {
    this.used -= pages;
    const runs = this.runs;
    // Index of the first run after the block.
    let lo = 0;
    let hi = runs.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (runs[mid]![0] < first) lo = mid + 1;
      else hi = mid;
    }
    const prev = lo > 0 ? runs[lo - 1] : undefined;
    const next = runs[lo];
    const joinsPrev = prev !== undefined && prev[0] + prev[1] === first;
    const joinsNext = next !== undefined && first + pages === next[0];
    if (joinsPrev && joinsNext) {
      prev[1] += pages + next[1];
      runs.splice(lo, 1);
    } else if (joinsPrev) prev[1] += pages;
    else if (joinsNext) {
      next[0] = first;
      next[1] += pages;
    } else runs.splice(lo, 0, [first, pages]);
  }
}
