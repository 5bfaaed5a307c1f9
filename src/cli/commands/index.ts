/**
 * Every command registers itself here: one import and one call per command module.
 */
import type { Command } from 'commander';
import { register as registerBenchmark } from './benchmark.js';
import { register as registerAudit } from './audit.js';
import { register as registerSnapshots } from './snapshots.js';
import { register as registerFiles } from './files.js';
import { register as registerCat } from './cat.js';
import { register as registerVerify } from './verify.js';
import { register as registerKey } from './key.js';
import { register as registerBackup } from './backup.js';
import { register as registerDemo } from './demo.js';
import { register as registerLs } from './ls.js';
import { register as registerRestore } from './restore.js';
import { register as registerMount } from './mount.js';
import { register as registerUmount } from './umount.js';

export function registerCommands(program: Command): void {
  void program;
  registerBenchmark(program);
  registerAudit(program);
  registerSnapshots(program);
  registerFiles(program);
  registerCat(program);
  registerVerify(program);
  registerKey(program);
  registerBackup(program);
  registerDemo(program);
  registerLs(program);
  registerRestore(program);
  registerMount(program);
  registerUmount(program);
}
