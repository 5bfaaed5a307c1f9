/**
 * Every command module, by the name it registers. Only the module of the command being run is
 * loaded: loading all of them (the writer, QR codes, restore's tools, ...) costs a noticeable part of
 * start-up, which a mount or a one-file `cat` would otherwise pay every time.
 */
import type { Command, Option } from 'commander';

interface CommandModule {
  register(program: Command): void;
}

/** In the order `pbsfs --help` lists them. */
const COMMANDS: Record<string, () => Promise<CommandModule>> = {
  benchmark: () => import('./benchmark.js'),
  audit: () => import('./audit.js'),
  snapshots: () => import('./snapshots.js'),
  files: () => import('./files.js'),
  cat: () => import('./cat.js'),
  verify: () => import('./verify.js'),
  key: () => import('./key.js'),
  backup: () => import('./backup.js'),
  demo: () => import('./demo.js'),
  ls: () => import('./ls.js'),
  restore: () => import('./restore.js'),
  mount: () => import('./mount.js'),
  umount: () => import('./umount.js'),
};

/**
 * The command word of `args` (the arguments after the program name), skipping the program's own
 * options and their values; undefined when there is none (help, version, a bare option).
 */
export function commandWord(program: Command, args: readonly string[]): string | undefined {
  const byFlag = new Map<string, Option>();
  for (const o of program.options) {
    if (o.long !== undefined) byFlag.set(o.long, o);
    if (o.short !== undefined) byFlag.set(o.short, o);
  }
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') return args[i + 1];
    if (!a.startsWith('-') || a === '-') return a;
    // "--opt=value" carries its value; "--opt value" takes the next argument.
    if (!a.includes('=') && byFlag.get(a)?.required === true) i++;
  }
  return undefined;
}

/**
 * Registers the command named by `args` only, when it is one of ours; otherwise (no arguments,
 * help, an unknown or misspelt command) all of them, so help and suggestions see every command.
 */
export async function registerCommands(program: Command, args?: readonly string[]): Promise<void> {
  const word = args !== undefined ? commandWord(program, args) : undefined;
  const names = word !== undefined && Object.hasOwn(COMMANDS, word) ? [word] : Object.keys(COMMANDS);
  const modules = await Promise.all(names.map((n) => COMMANDS[n]!()));
  for (const m of modules) m.register(program);
}
