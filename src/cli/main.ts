#!/usr/bin/env node
/**
 * pbsfs command line. Global options mirror proxmox-backup-client; each command lives in
 * ./commands/<name>.ts.
 */
import { Command, CommanderError } from 'commander';
import { addGlobalOptions, reportError } from './context.js';
import { registerCommands } from './commands/index.js';
import { UsageError } from '../errors.js';

export function buildProgram(): Command {
  const program = new Command('pbsfs')
    .description('Mount, browse, restore and verify Proxmox Backup Server snapshots without a server')
    .version('0.1.0')
    .showHelpAfterError('(run pbsfs --help for usage)')
    .exitOverride();
  addGlobalOptions(program);
  registerCommands(program);
  return program;
}

async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (e) {
    if (e instanceof CommanderError) {
      // Help and version output are successes; parse errors were already printed by commander.
      process.exitCode = e.exitCode === 0 ? 0 : 2;
      return;
    }
    process.exitCode = reportError(e instanceof Error ? e : new UsageError(String(e)));
  }
}

await main(process.argv);
