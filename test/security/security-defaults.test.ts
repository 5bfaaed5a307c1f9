/**
 * Security defaults that need no mount:
 * - no command takes a passphrase on the command line;
 * - processes pbsfs starts (restore's helper tools) see the passphrase neither in argv nor in
 *   their environment, and no process's argv holds it while pbsfs runs;
 * - a wrong passphrase is reported without echoing it (with and without --debug);
 * - read commands (snapshots, files, cat, ls, verify) leave no file behind in HOME, TMPDIR or the
 *   working directory, and never print key material.
 */
import { spawn } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { Command } from 'commander';
import { dir as tmpDir } from 'tmp-promise';
import { describe, expect, it } from 'vitest';
import { registerCommands } from '../../src/cli/commands/index.js';
import { addGlobalOptions } from '../../src/cli/context.js';
import { formatSnapshotRef } from '../../src/store/backup-ref.js';
import { errorLine, runCli } from '../damaged/cli.js';
import { expectedSnapshots, splitSnapshotPath } from '../helpers/datastore-expected.js';
import { VECTOR_PASSPHRASE, cliPath, datastoreDir, keysDir } from '../helpers/paths.js';

const keysExpected = JSON.parse(readFileSync(join(keysDir, 'expected.json'), 'utf8')) as { raw_key_hex: string };
const rawKey = Buffer.from(keysExpected.raw_key_hex, 'hex');
/** Forms key material could be printed in. */
const keyForms = [rawKey.toString('hex'), rawKey.toString('base64'), rawKey.toString('base64').replace(/=+$/, '')];

const snaps = expectedSnapshots();
const encPxar = snaps.find((s) => s.crypt_mode === 'encrypt' && Object.keys(s.files).some((f) => f.endsWith('.pxar.didx')))!;
const encImage = snaps.find((s) => s.crypt_mode === 'encrypt' && Object.keys(s.files).some((f) => f.endsWith('.fidx')))!;
const archiveOf = (s: typeof encPxar, ext: string): string => Object.keys(s.files).find((f) => f.endsWith(ext))!;
const refOf = (s: typeof encPxar): string => formatSnapshotRef(splitSnapshotPath(s.path).ref);
const nsArgs = (s: typeof encPxar): string[] => {
  const { ns } = splitSnapshotPath(s.path);
  return ns.length > 0 ? ['--ns', ns.join('/')] : [];
};

function allCommands(c: Command): Command[] {
  return [c, ...c.commands.flatMap(allCommands)];
}

describe('passphrases never in argv', () => {
  it('no command or global option takes a passphrase, password or secret', async () => {
    // The global options and commands main.ts registers, without running main.
    const program = addGlobalOptions(new Command('pbsfs'));
    await registerCommands(program);
    const cmds = allCommands(program);
    expect(cmds.length).toBeGreaterThan(5);
    const offending: string[] = [];
    for (const c of cmds) {
      for (const o of c.options) {
        const names = [o.long ?? '', o.short ?? ''].join(' ');
        if (/pass|password|secret|pwd|pin\b/i.test(names) && !/^--master-pubkey/.test(o.long ?? '')) offending.push(`${c.name()} ${names}`);
      }
      for (const a of c.registeredArguments) {
        if (/pass|password|secret/i.test(a.name())) offending.push(`${c.name()} <${a.name()}>`);
      }
    }
    expect(offending).toEqual([]);
  });

  it('restore helpers get no passphrase in argv or environment; no process argv holds it', async () => {
    const tmp = await tmpDir({ unsafeCleanup: true, prefix: 'pbsfs-sec-' });
    try {
      // Wrappers for every tool restore may run: log argv and environment, then run the real tool.
      const shims = join(tmp.path, 'shims');
      const log = join(tmp.path, 'tools.log');
      mkdirSync(shims);
      const realPath = process.env.PATH ?? '';
      let wrapped = 0;
      for (const tool of ['python3', 'setfattr', 'getfattr', 'setfacl', 'chattr', 'mkfifo', 'mknod', 'touch', 'sh']) {
        const real = realPath.split(delimiter).map((d) => join(d, tool)).find((p) => existsSync(p));
        if (real === undefined) continue;
        const shim = join(shims, tool);
        writeFileSync(shim, `#!/bin/sh\n{ printf 'ARGV %s\\n' "$0 $*"; env; } >> '${log}'\nexec '${real}' "$@"\n`);
        chmodSync(shim, 0o755);
        wrapped++;
      }
      expect(wrapped).toBeGreaterThan(0);
      const target = join(tmp.path, 'restore');
      const seen: string[] = [];
      const watched = new Set<number>();
      const child = spawn(
        process.execPath,
        [cliPath, '--repository', datastoreDir, '--keyfile', join(keysDir, 'key-scrypt.json'), ...nsArgs(encPxar), 'restore', refOf(encPxar), archiveOf(encPxar, '.pxar.didx'), target],
        { env: { ...process.env, PATH: `${shims}${delimiter}${realPath}`, PBS_ENCRYPTION_PASSWORD: VECTOR_PASSPHRASE, PBS_REPOSITORY: '' }, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let stderr = '';
      child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
      child.stdout.resume();
      // Meanwhile, look at the argv and environment of pbsfs and every process it starts. Only
      // descendants are read (/proc/<pid>/stat gives the parent): reading other processes'
      // cmdline can block behind a stuck FUSE mount of some other test.
      let running = true;
      const poll = (async () => {
        while (running) {
          const parent = new Map<number, number>();
          for (const pid of await readdir('/proc').catch(() => [] as string[])) {
            if (!/^\d+$/.test(pid)) continue;
            const stat = await readFile(`/proc/${pid}/stat`, 'latin1').catch(() => '');
            const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
            if (Number.isInteger(ppid)) parent.set(Number(pid), ppid);
          }
          const isOurs = (pid: number): boolean => {
            for (let p: number | undefined = pid, n = 0; p !== undefined && p > 1 && n < 64; p = parent.get(p), n++) if (p === child.pid) return true;
            return false;
          };
          for (const pid of parent.keys()) {
            if (!isOurs(pid)) continue;
            watched.add(pid);
            const cmdline = await readFile(`/proc/${pid}/cmdline`).catch(() => Buffer.alloc(0));
            if (cmdline.includes(VECTOR_PASSPHRASE)) seen.push(`argv of ${pid}: ${cmdline.toString().replace(/\0/g, ' ')}`);
            // pbsfs itself was given the passphrase in its environment; its children must not be.
            if (pid === child.pid) continue;
            const environ = await readFile(`/proc/${pid}/environ`).catch(() => Buffer.alloc(0));
            if (environ.includes(VECTOR_PASSPHRASE)) seen.push(`environment of ${pid} (${cmdline.toString().replace(/\0/g, ' ')})`);
          }
          await new Promise((r) => setTimeout(r, 2));
        }
      })();
      const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
      running = false;
      await poll;
      expect(code, stderr).toBe(0);
      expect(seen).toEqual([]);
      expect(watched.size).toBeGreaterThan(0);
      // The restore did run helper tools (so the check above is not vacuous) and none got it.
      const text = existsSync(log) ? readFileSync(log, 'utf8') : '';
      expect(text).toMatch(/^ARGV /m);
      expect(text.includes(VECTOR_PASSPHRASE), 'a helper tool saw the passphrase (argv or environment)').toBe(false);
      expect(text).not.toMatch(/^PBS_ENCRYPTION_PASSWORD=/m);
    } finally {
      await tmp.cleanup();
    }
  });
});

describe('passphrases never in messages', () => {
  for (const keyFile of ['key-scrypt.json', 'key-pbkdf2.json']) {
    it(`a wrong passphrase for ${keyFile} is named as such, never echoed (also with --debug)`, async () => {
      const wrong = `wrong-${keyFile}-Zq9`;
      for (const debug of [[], ['--debug']]) {
        const r = await runCli(
          [...debug, '--repository', datastoreDir, '--keyfile', join(keysDir, keyFile), ...nsArgs(encImage), 'cat', refOf(encImage), archiveOf(encImage, '.fidx')],
          { env: { PBS_ENCRYPTION_PASSWORD: wrong } },
        );
        expect(r.code).toBe(2);
        expect(r.stdout.length).toBe(0);
        if (debug.length === 0) expect(errorLine(r)).toMatch(/passphrase|decrypt the key/);
        expect(r.stderr).toContain(keyFile);
        expect(r.stderr).not.toContain(wrong);
        expect(r.stderr).not.toContain(VECTOR_PASSPHRASE);
      }
    });
  }
});

/** Every path below root with its type, size and mtime. */
function listing(root: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const n of readdirSync(d).sort()) {
      const p = join(d, n);
      const st = lstatSync(p);
      out.push(`${p}\t${st.mode.toString(8)}\t${st.size}\t${st.mtimeMs}`);
      if (st.isDirectory()) walk(p);
    }
  };
  walk(root);
  return out;
}

describe('read commands write no key material to disk', () => {
  it('snapshots, files, cat, ls and verify leave HOME, TMPDIR and the working directory untouched and print no key', async () => {
    const tmp = await tmpDir({ unsafeCleanup: true, prefix: 'pbsfs-home-' });
    try {
      const home = join(tmp.path, 'home');
      const tmpd = join(tmp.path, 'tmp');
      const cwd = join(tmp.path, 'cwd');
      for (const d of [home, tmpd, cwd]) mkdirSync(d);
      const keyFile = join(home, 'key.json');
      copyFileSync(join(keysDir, 'key-scrypt.json'), keyFile);
      const env = {
        HOME: home,
        TMPDIR: tmpd,
        XDG_CONFIG_HOME: join(home, '.config'),
        XDG_CACHE_HOME: join(home, '.cache'),
        XDG_DATA_HOME: join(home, '.local', 'share'),
        XDG_STATE_HOME: join(home, '.local', 'state'),
        PBS_ENCRYPTION_PASSWORD: VECTOR_PASSPHRASE,
      };
      const before = listing(tmp.path);
      const base = ['--repository', datastoreDir, '--keyfile', keyFile];
      const runs = [
        [...base, 'snapshots'],
        [...base, ...nsArgs(encImage), 'files', refOf(encImage)],
        [...base, ...nsArgs(encImage), 'cat', refOf(encImage), archiveOf(encImage, '.fidx')],
        [...base, ...nsArgs(encPxar), 'ls', refOf(encPxar), archiveOf(encPxar, '.pxar.didx'), '/'],
        [...base, ...nsArgs(encImage), 'verify', refOf(encImage)],
        [...base, '--output-format', 'json', ...nsArgs(encPxar), 'verify', refOf(encPxar)],
      ];
      for (const args of runs) {
        const r = await runCli(args, { env, cwd });
        expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
        for (const form of keyForms) {
          expect(r.stdout.includes(form), `${args.join(' ')} printed key material`).toBe(false);
          expect(r.stderr).not.toContain(form);
        }
        expect(r.stdout.includes(VECTOR_PASSPHRASE)).toBe(false);
      }
      expect(listing(tmp.path)).toEqual(before);
    } finally {
      await tmp.cleanup();
    }
  });
});
