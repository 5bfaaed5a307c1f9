/**
 * main.ts loads only the module of the command being run; commandWord finds that command in
 * argv past the global options (with or without their values).
 */
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { commandWord, registerCommands } from '../../src/cli/commands/index.js';
import { addGlobalOptions } from '../../src/cli/context.js';

const program = (): Command => addGlobalOptions(new Command('pbsfs'));

describe('commandWord', () => {
  it.each([
    [['mount', 'a', 'b'], 'mount'],
    [['--repository', '/ds', 'ls', 'x'], 'ls'],
    [['--repository=/ds', '--debug', 'cat', 'x'], 'cat'],
    [['--keyfile', 'mount', 'files', 'vm/1/2024-01-01T00:00:00Z'], 'files'],
    [['--ns', 'a/b', '--output-format', 'json', 'snapshots'], 'snapshots'],
    [['--debug', '--', 'verify'], 'verify'],
    [['--help'], undefined],
    [[], undefined],
  ])('%j -> %s', (args, word) => {
    expect(commandWord(program(), args)).toBe(word);
  });
});

describe('registerCommands', () => {
  const names = (p: Command): string[] => p.commands.map((c) => c.name());

  it('registers only the command being run', async () => {
    const p = program();
    await registerCommands(p, ['--repository', '/ds', 'mount', 'x']);
    expect(names(p)).toEqual(['mount']);
  });

  it('registers every command for help, no command, or an unknown one', async () => {
    for (const args of [['--help'], [], ['mout', 'x'], ['help', 'mount']]) {
      const p = program();
      await registerCommands(p, args);
      expect(names(p)).toEqual(expect.arrayContaining(['mount', 'umount', 'cat', 'ls', 'restore', 'verify', 'key', 'demo', 'backup']));
    }
  });
});
