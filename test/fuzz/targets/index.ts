/** Every fuzz target, in report order. */
import type { FuzzTarget } from '../framework.js';
import { blobTarget } from './blob.js';
import { catalogTarget } from './catalog.js';
import { datastorePathsTarget } from './datastore-paths.js';
import { exfatTarget, fatTarget } from './fat.js';
import { dynamicIndexTarget, fixedIndexTarget } from './index-files.js';
import { keyFileTarget } from './key-file.js';
import { manifestTarget } from './manifest.js';
import { pxarAccessorTarget, pxarPayloadTarget, pxarSequentialTarget } from './pxar.js';

export const TARGETS: FuzzTarget[] = [
  keyFileTarget,
  blobTarget,
  fixedIndexTarget,
  dynamicIndexTarget,
  manifestTarget,
  catalogTarget,
  pxarAccessorTarget,
  pxarSequentialTarget,
  pxarPayloadTarget,
  datastorePathsTarget,
  fatTarget,
  exfatTarget,
];

export function findTarget(name: string): FuzzTarget {
  const t = TARGETS.find((x) => x.name === name);
  if (t === undefined) throw new Error(`unknown fuzz target ${JSON.stringify(name)} (known: ${TARGETS.map((x) => x.name).join(', ')})`);
  return t;
}
