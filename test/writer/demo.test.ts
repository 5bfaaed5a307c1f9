import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { withDir } from 'tmp-promise';
import { cliPath } from '../helpers/paths.js';
import { DEMO_PASSPHRASE, defaultDemoDir } from '../../src/writer/demo-data.js';

function pbsfs(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [cliPath, ...args], { encoding: 'utf8', env: { ...process.env, CI: 'true', ...env } });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

describe('pbsfs demo', () => {
  it('creates an encrypted demo datastore once, reuses it, and it verifies with the printed passphrase', async () => {
    await withDir(
      async ({ path: tmp }) => {
        const dir = join(tmp, 'demo');
        const first = pbsfs(['demo', dir]);
        expect(first.stderr).toBe('');
        expect(first.status).toBe(0);
        expect(first.stdout).toContain(`created ${dir}`);
        expect(first.stdout).toContain(DEMO_PASSPHRASE);
        expect(first.stdout).toContain('README.txt');
        expect(first.stdout).toContain('Welcome to the pbsfs demo snapshot.');
        expect(first.stdout).toMatch(/mount host\/pbsfs-demo\/\S+Z /);
        if (/^mounted /m.test(first.stdout)) {
          // FUSE available: the tree came through the mount, which is gone again
          expect(first.stdout).toMatch(/root\.pxar\//);
          expect(first.stdout).toMatch(/^unmounted /m);
          expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain('pbsfs-demo-mnt-');
        }
        const key = JSON.parse(readFileSync(join(dir, 'demo.key'), 'utf8')) as { kdf: Record<string, unknown> };
        expect(Object.keys(key.kdf)).toEqual(['Scrypt']);
        const marker = readFileSync(join(dir, 'demo.json'), 'utf8');

        const second = pbsfs(['demo', dir]);
        expect(second.status).toBe(0);
        expect(second.stdout).toContain(`reusing the demo datastore in ${dir}`);
        expect(readFileSync(join(dir, 'demo.json'), 'utf8')).toBe(marker);

        const third = pbsfs(['demo', dir, '--rebuild', '--no-mount']);
        expect(third.status).toBe(0);
        expect(third.stdout).toContain(`created ${dir}`);
        expect(third.stdout).not.toContain('mounted');

        const repo = join(dir, 'datastore');
        const v = pbsfs(['--repository', repo, '--keyfile', join(dir, 'demo.key'), 'verify'], { PBS_ENCRYPTION_PASSWORD: DEMO_PASSPHRASE });
        expect(v.stdout).toContain('signature verified');
        expect(v.status).toBe(0);
        const files = pbsfs(['--repository', repo, 'snapshots', '--output-format', 'json']);
        expect(files.status).toBe(0);
        expect(files.stdout).toContain('disk.img');
      },
      { unsafeCleanup: true },
    );
  });

  it('defaults to the XDG cache directory', () => {
    const old = process.env.XDG_CACHE_HOME;
    process.env.XDG_CACHE_HOME = '/x/cache';
    try {
      expect(defaultDemoDir()).toBe('/x/cache/pbsfs/demo');
    } finally {
      if (old === undefined) delete process.env.XDG_CACHE_HOME;
      else process.env.XDG_CACHE_HOME = old;
    }
  });
});
