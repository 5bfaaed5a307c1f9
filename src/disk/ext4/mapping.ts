/** A run of a file's logical blocks and where they are (shared by extents and block maps). */
export interface BlockRun {
  /** First logical block of the run. */
  lblk: number;
  /** Number of blocks (at least 1). */
  len: number;
  /** First physical block, or undefined for a hole (reads as zeros). */
  pblk: number | undefined;
  /** An uninitialized (preallocated) extent: allocated but reads as zeros. */
  unwritten: boolean;
}

/** Logical block numbers are 32-bit in both extents and block maps. */
export const MAX_LBLK = 2 ** 32;

/** Finds the run containing logical block `lblk` of one inode. */
export interface BlockMapper {
  map(lblk: number): Promise<BlockRun>;
}
