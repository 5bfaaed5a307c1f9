/**
 * Runs the built CLI (`node dist/src/cli/main.js`) in a child process, as a user would, with a
 * clean environment: no passphrase unless given, HOME/TMPDIR as given.
 */
import { spawn } from 'node:child_process';
import { cliPath } from '../helpers/paths.js';

export interface CliRun {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

export function runCli(args: string[], opts: { env?: Record<string, string | undefined>; cwd?: string } = {}): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries({ ...process.env, PBS_REPOSITORY: undefined, PBS_ENCRYPTION_PASSWORD: undefined, ...opts.env })) {
      if (v !== undefined) env[k] = v;
    }
    const child = spawn(process.execPath, [cliPath, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'], ...(opts.cwd ? { cwd: opts.cwd } : {}) });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout: Buffer.concat(out), stderr: err }));
  });
}

/** The CLI error contract: exit code >= 2, exactly one line on stderr, no stack trace. */
export function errorLine(r: CliRun): string {
  const lines = r.stderr.split('\n').filter((l) => l.length > 0);
  if (lines.length !== 1 || /^\s+at /m.test(r.stderr) || (r.code ?? 0) < 2) {
    throw new Error(`expected one error line and exit >= 2, got exit ${r.code} and stderr:\n${r.stderr}`);
  }
  return lines[0]!;
}
