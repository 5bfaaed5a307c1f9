#!/usr/bin/env node
/**
 * pbsfs command line. Global options mirror proxmox-backup-client; each command lives in
 * ./commands/<name>.ts.
 */
import { Command, CommanderError } from 'commander';
import { addGlobalOptions, reportError } from './context.js';
import { registerCommands } from './commands/index.js';
import { UsageError } from '../errors.js';
import { closeRepositories } from './open-repositories.js';

/** The program with its global options and (of the commands) those that `args` may run. */
export async function buildProgram(args?: readonly string[]): Promise<Command> {
  const program = new Command('pbsfs')
    .description('Mount, browse, restore and verify Proxmox Backup Server snapshots without a server')
    .version('0.1.0')
    .showHelpAfterError('(run pbsfs --help for usage)')
    .exitOverride();
  addGlobalOptions(program);
  await registerCommands(program, args);
  return program;
}

async function main(argv: string[]): Promise<void> {
  const program = await buildProgram(argv.slice(2));
  try {
    await program.parseAsync(argv);
  } catch (e) {
    if (e instanceof CommanderError) {
      // Help and version output are successes; parse errors were already printed by commander.
      process.exitCode = e.exitCode === 0 ? 0 : 2;
      return;
    }
    process.exitCode = reportError(e instanceof Error ? e : new UsageError(String(e)));
  } finally {
    await closeRepositories();
  }
}

await main(process.argv);
