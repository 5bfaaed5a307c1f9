/** Opens either index kind from its bytes, by file extension, checking that the magic agrees. */
import { FormatError } from '../errors.js';
import type { ChunkIndex } from './chunk-index.js';
import { DynamicIndex } from './dynamic-index.js';
import { FixedIndex } from './fixed-index.js';

export function parseIndex(raw: Buffer, name: string): ChunkIndex {
  if (name.endsWith('.fidx')) return FixedIndex.parse(raw, name);
  if (name.endsWith('.didx')) return DynamicIndex.parse(raw, name);
  throw new FormatError('not an index file name (expected .fidx or .didx)', { file: name });
}
