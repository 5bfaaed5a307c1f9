/**
 * proxmox-backup-client habits, through the CLI in child processes: `latest` and group names
 * where a snapshot is expected, the `ns/...` notation, unknown groups and namespaces as errors,
 * the manifest readable by `cat`, refusals that name the command that works, the default key
 * file, key-file look-alikes, stable error codes in JSON errors, and upstream's output
 * environment variables. Codes and exit statuses are checked, not message wording.
 */
import { copyFileSync, mkdirSync, rmSync, unlinkSync, readdirSync } from 'node:fs';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { copyDatastore } from '../helpers/datastore-copy.js';
import { cliEnv, runCli } from '../helpers/mount-cli.js';
import { datastoreDir, keysDir } from '../helpers/paths.js';

const R = ['--repository', datastoreDir];
const KEY = ['--keyfile', join(keysDir, 'key-none.json')];
const emptyConfig = mkdtempSync(join(tmpdir(), 'pbsfs-xdg-'));
const env = cliEnv({ XDG_CONFIG_HOME: emptyConfig });
afterAll(() => rmSync(emptyConfig, { recursive: true, force: true }));

const run = (args: string[], e: NodeJS.ProcessEnv = env) => runCli(args, e);

/** The JSON error object a command prints on stderr under --output-format json. */
function jsonError(stderr: string): { code: string; message: string; 'exit-code': number } {
  return (JSON.parse(stderr.trim().split('\n').pop()!) as { error: { code: string; message: string; 'exit-code': number } }).error;
}

async function filesOf(snapshot: string, extra: string[] = []): Promise<unknown> {
  const r = await run([...R, ...extra, '--output-format', 'json', 'files', snapshot]);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout.toString());
}

describe('snapshot selection', () => {
  it('a group means its newest snapshot; TYPE/ID/latest is the same', async () => {
    const newest = await filesOf('vm/100/2024-06-03T10:00:00Z');
    expect(await filesOf('vm/100')).toEqual(newest);
    expect(await filesOf('vm/100/latest')).toEqual(newest);
  });

  it('latest means the newest snapshot of any group in the namespace', async () => {
    expect(await filesOf('latest')).toEqual(await filesOf('host/testhost/2024-06-04T11:00:00Z'));
    expect(await filesOf('latest', ['--ns', 'dev'])).toEqual(await filesOf('host/testhost/2024-06-05T11:00:00Z', ['--ns', 'dev']));
  });

  it('the ns/NAME/ prefix names the namespace, as snapshots prints it', async () => {
    const listed = await run([...R, '--ns', 'dev', 'snapshots']);
    expect(listed.code).toBe(0);
    expect(listed.stdout.toString()).toContain('ns/dev/host/testhost/2024-06-05T11:00:00Z');
    expect(await filesOf('ns/dev/host/testhost/2024-06-05T11:00:00Z')).toEqual(await filesOf('host/testhost/2024-06-05T11:00:00Z', ['--ns', 'dev']));
    const clash = await run([...R, '--ns', 'other', '--output-format', 'json', 'files', 'ns/dev/host/testhost/2024-06-05T11:00:00Z']);
    expect(clash.code).toBe(2);
    expect(jsonError(clash.stderr).code).toBe('option-conflict');
  });

  it('an unknown group, namespace or snapshot: exit 4 with its own code', async () => {
    const cases: [string[], string][] = [
      [['files', 'vm/999'], 'group-not-found'],
      [['snapshots', 'vm/999'], 'group-not-found'],
      [['--ns', 'nope', 'snapshots'], 'namespace-not-found'],
      [['--ns', 'nope', 'files', 'latest'], 'namespace-not-found'],
      [['files', 'vm/100/2030-01-01T00:00:00Z'], 'snapshot-not-found'],
      [['cat', 'vm/100', 'nothing.img'], 'archive-not-found'],
    ];
    for (const [args, code] of cases) {
      const r = await run([...R, '--output-format', 'json', ...args]);
      expect({ args, code: r.code }).toEqual({ args, code: 4 });
      expect(r.stdout.length).toBe(0);
      expect(jsonError(r.stderr)).toMatchObject({ code, 'exit-code': 4 });
    }
  });
});

describe('manifest and refusals', () => {
  it('cat SNAPSHOT index.json writes the manifest JSON', async () => {
    for (const name of ['index.json', 'index.json.blob']) {
      const r = await run([...R, 'cat', 'host/testhost/2024-06-02T11:00:00Z', name]);
      expect(r.code).toBe(0);
      const m = JSON.parse(r.stdout.toString()) as Record<string, unknown>;
      expect(m['backup-id']).toBe('testhost');
      expect(m['backup-time']).toBe(1717326000);
    }
  });

  it('ls on a disk image or the manifest: exit 2, not-a-file-archive, naming cat', async () => {
    for (const [snap, name] of [
      ['vm/100/2024-06-02T10:00:00Z', 'drive-scsi0.img'],
      ['vm/100/2024-06-02T10:00:00Z', 'qemu-server.conf'],
      ['host/testhost/2024-06-02T11:00:00Z', 'index.json'],
    ] as const) {
      const r = await run([...R, '--output-format', 'json', 'ls', snap, name]);
      expect(r.code).toBe(2);
      const e = jsonError(r.stderr);
      expect(e.code).toBe('not-a-file-archive');
      expect(e.message).toContain('pbsfs cat');
    }
  });

  it('a missing chunk is damage: exit 3, chunk-missing', async () => {
    const copy = await copyDatastore();
    try {
      const chunkDirs = readdirSync(join(copy.root, '.chunks'));
      // Remove every chunk: whichever the image needs first is gone.
      for (const d of chunkDirs) for (const f of readdirSync(join(copy.root, '.chunks', d))) unlinkSync(join(copy.root, '.chunks', d, f));
      const r = await run(['--repository', copy.root, '--output-format', 'json', 'cat', 'vm/100/2024-06-02T10:00:00Z', 'drive-scsi0.img']);
      expect(r.code).toBe(3);
      expect(jsonError(r.stderr)).toMatchObject({ code: 'chunk-missing', 'exit-code': 3 });
    } finally {
      await copy.cleanup();
    }
  });
});

describe('key files', () => {
  const encFile = ['cat', 'host/testhost/2024-06-01T11:00:00Z', 'root.pxar', '/hello.txt'];

  it('the default key file (~/.config/proxmox-backup/encryption-key.json) is used without --keyfile', async () => {
    const withKey = await run([...R, ...KEY, ...encFile]);
    expect(withKey.code).toBe(0);
    const noKey = await run([...R, ...encFile]);
    expect(noKey.code).not.toBe(0);
    const cfg = mkdtempSync(join(tmpdir(), 'pbsfs-xdg-'));
    try {
      mkdirSync(join(cfg, 'proxmox-backup'));
      copyFileSync(join(keysDir, 'key-scrypt.json'), join(cfg, 'proxmox-backup', 'encryption-key.json'));
      const viaDefault = await run([...R, ...encFile], cliEnv({ XDG_CONFIG_HOME: cfg }));
      expect(viaDefault.stderr).toBe('');
      expect(viaDefault.code).toBe(0);
      expect(viaDefault.stdout.equals(withKey.stdout)).toBe(true);
      // A plain snapshot is read without asking for the default key's passphrase.
      const plain = await run([...R, 'files', 'host/testhost/2024-06-02T11:00:00Z'], cliEnv({ XDG_CONFIG_HOME: cfg, PBS_ENCRYPTION_PASSWORD: '' }));
      expect(plain.code).toBe(0);
    } finally {
      rmSync(cfg, { recursive: true, force: true });
    }
  });

  it('key problems are usage errors (exit 2) with their own codes; look-alikes are named', async () => {
    const cases: [string, string, string | undefined][] = [
      [join(keysDir, 'does-not-exist.json'), 'keyfile-missing', undefined],
      [join(keysDir, 'master-private.pem'), 'keyfile-wrong-type', '--master-keyfile'],
      [join(keysDir, 'master-public.pem'), 'keyfile-wrong-type', '--master-keyfile'],
      [join(keysDir, 'paperkey-key-scrypt.txt'), 'keyfile-wrong-type', 'import-paperkey'],
      [join(keysDir, 'paperkey-key-scrypt.html'), 'keyfile-wrong-type', 'import-paperkey'],
      [join(keysDir, 'expected.json'), 'keyfile-invalid', undefined],
    ];
    for (const [file, code, hint] of cases) {
      const r = await run([...R, '--keyfile', file, '--output-format', 'json', ...encFile]);
      expect({ file, code: r.code }).toEqual({ file, code: 2 });
      const e = jsonError(r.stderr);
      expect(e.code).toBe(code);
      expect(e.message).toContain(file);
      if (hint !== undefined) expect(e.message).toContain(hint);
    }
  });
});

describe('output environment', () => {
  it('PROXMOX_OUTPUT_FORMAT chooses the format; --output-format wins over it', async () => {
    const j = await run([...R, 'snapshots'], { ...env, PROXMOX_OUTPUT_FORMAT: 'json' });
    expect(j.code).toBe(0);
    expect(Array.isArray(JSON.parse(j.stdout.toString()))).toBe(true);
    const t = await run([...R, '--output-format', 'text', 'snapshots'], { ...env, PROXMOX_OUTPUT_FORMAT: 'json' });
    expect(t.stdout.toString().split('\n')[0]).toMatch(/^snapshot\s+size\s+crypt-mode\s+files$/);
  });

  it('PROXMOX_OUTPUT_NO_HEADER drops the table header', async () => {
    const r = await run([...R, 'snapshots'], { ...env, PROXMOX_OUTPUT_NO_HEADER: '1' });
    expect(r.code).toBe(0);
    const lines = r.stdout.toString().trim().split('\n');
    expect(lines[0]).toMatch(/^host\/testhost\/2024-06-01T11:00:00Z\s/);
    expect(lines).toHaveLength(7);
  });

  it('an error under JSON output is one JSON object on stderr; text mode keeps one sentence', async () => {
    const j = await run([...R, '--output-format', 'json', 'files', 'vm/999']);
    expect(j.stderr.trim().split('\n')).toHaveLength(1);
    expect(jsonError(j.stderr)).toEqual({ code: 'group-not-found', message: 'vm/999: no such backup group', 'exit-code': 4 });
    const t = await run([...R, 'files', 'vm/999']);
    expect(t.stderr).toBe('pbsfs: vm/999: no such backup group\n');
  });
});
