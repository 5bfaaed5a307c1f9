/**
 * The README's quick start is a contract: exactly two command lines for a fresh Debian machine.
 * Line 2 (setup + the whole suite) is what CI runs through .ci/run, so it is checked by every CI
 * run. Line 1 is `bash scripts/setup.sh && <demo>`; setup is the same script CI just ran, so this
 * test runs the demo part exactly as written (in a private HOME), through a real mount.
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { withDir } from 'tmp-promise';
import { projectRoot } from './helpers/paths.js';

function quickStartLines(): string[] {
  const readme = readFileSync(join(projectRoot, 'README.md'), 'utf8');
  const section = readme.split(/^## /m).find((s) => s.startsWith('Quick start'));
  expect(section, 'README has a "Quick start" section').toBeDefined();
  const block = /```sh\n([\s\S]*?)```/.exec(section!);
  expect(block, 'the quick start has a sh code block').not.toBeNull();
  return block![1]!.split('\n').filter((l) => l.trim() !== '');
}

describe('README quick start', () => {
  it('has exactly two command lines: setup + demo, and setup + the test suite that CI runs', () => {
    const lines = quickStartLines();
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^bash scripts\/setup\.sh && .*\bdemo\b/);
    expect(lines[1]).toMatch(/^bash scripts\/setup\.sh && npm test$/);
    const ci = readFileSync(join(projectRoot, '.ci', 'run'), 'utf8');
    expect(ci).toContain(lines[1]);
  });

  it('the demo part of the first line runs as written and shows the snapshot through a mount', async () => {
    const demo = quickStartLines()[0]!.replace(/^bash scripts\/setup\.sh && /, '');
    await withDir(
      async ({ path: home }) => {
        const r = spawnSync('bash', ['-c', demo], {
          cwd: projectRoot,
          encoding: 'utf8',
          env: { ...process.env, HOME: home, XDG_CACHE_HOME: join(home, '.cache'), CI: 'true' },
          timeout: 120_000,
        });
        expect(r.status, r.stderr).toBe(0);
        expect(r.stdout).toMatch(/^mounted /m);
        expect(r.stdout).toContain('Welcome to the pbsfs demo snapshot.');
        expect(r.stdout).toMatch(/^unmounted /m);
        expect(r.stdout).toContain('To do this by hand:');
        expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain('pbsfs-demo-mnt-');
      },
      { unsafeCleanup: true },
    );
  });
});
