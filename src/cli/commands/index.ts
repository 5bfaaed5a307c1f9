/**
 * Every command registers itself here: one import and one call per command module.
 */
import type { Command } from 'commander';
import { register as registerBenchmark } from './benchmark.js';

export function registerCommands(program: Command): void {
  void program;
  registerBenchmark(program);
}
