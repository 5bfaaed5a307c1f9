/**
 * Driving `pbsfs mount` through the built CLI in child processes, and always cleaning up:
 * every mount point handed out is force-unmounted (fusermount -uz) in cleanup, even when a test
 * failed or a mount process crashed, so a dead mount never poisons the next test.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cliPath, VECTOR_PASSPHRASE } from './paths.js';

export interface CliResult {
  code: number;
  stdout: Buffer;
  stderr: string;
}

export function cliEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, PBS_ENCRYPTION_PASSWORD: VECTOR_PASSPHRASE, ...extra };
  delete env.PBS_REPOSITORY;
  return env;
}

export function runCli(args: string[], env: NodeJS.ProcessEnv = cliEnv()): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [cliPath, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    child.stdout!.on('data', (d: Buffer) => out.push(d));
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (d: string) => (err += d));
    child.on('close', (code) => resolve({ code: code ?? -1, stdout: Buffer.concat(out), stderr: err }));
  });
}

export class MountTracker {
  private readonly dirs: string[] = [];
  private readonly children: ChildProcess[] = [];

  /** A fresh empty directory to mount on. */
  mountpoint(): string {
    const d = mkdtempSync(join(tmpdir(), 'pbsfs-mnt-'));
    this.dirs.push(d);
    return d;
  }

  /** Starts `pbsfs ... mount --foreground ...`; resolves once it says it is mounted. */
  async foreground(args: string[], env: NodeJS.ProcessEnv = cliEnv()): Promise<{ child: ChildProcess; stderr: () => string }> {
    const child = spawn(process.execPath, [cliPath, ...args], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    this.children.push(child);
    let err = '';
    child.stderr!.setEncoding('utf8');
    await new Promise<void>((resolve, reject) => {
      child.stderr!.on('data', (d: string) => {
        err += d;
        if (err.includes('mounted at')) resolve();
      });
      child.on('exit', (code) => reject(new Error(`mount exited with ${code}: ${err}`)));
    });
    return { child, stderr: () => err };
  }

  /** Unmounts everything (lazily, ignoring errors), stops foreground mounts, removes the dirs. */
  cleanup(): void {
    for (const d of this.dirs) spawnSync('fusermount', ['-uz', d], { stdio: 'ignore' });
    for (const c of this.children) if (c.exitCode === null) c.kill('SIGKILL');
    for (const d of this.dirs.splice(0)) {
      try {
        rmSync(d, { recursive: true, force: true });
      } catch {
        // still busy: leave it
      }
    }
  }
}
