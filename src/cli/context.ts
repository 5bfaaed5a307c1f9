/**
 * What every command shares: the global options (mirroring proxmox-backup-client), output in
 * text/json/json-pretty, and one error policy: a PbsfsError prints its one-sentence message on
 * stderr and exits with its code (>= 2); anything else is a bug and says so (stack with --debug).
 */
import type { Command } from 'commander';
import { isPbsfsError, UsageError } from '../errors.js';
import type { S3Options } from '../store/s3-config.js';
import { EXIT } from './exit-codes.js';

export type OutputFormat = 'text' | 'json' | 'json-pretty';

export interface GlobalOptions {
  /** Repository string (from --repository or PBS_REPOSITORY). */
  repository: string | undefined;
  /** Namespace, `a/b` form; undefined = root namespace. */
  ns: string | undefined;
  keyfile: string | undefined;
  /** Pinned SHA-256 fingerprint of a PBS server's certificate (--fingerprint). */
  fingerprint?: string | undefined;
  masterKeyfile: string | undefined;
  outputFormat: OutputFormat;
  debug: boolean;
  /** --s3-endpoint, --s3-region, --s3-vhost-style (for `s3://` repositories). */
  s3?: S3Options;
}

const FORMATS: readonly OutputFormat[] = ['text', 'json', 'json-pretty'];

/** Declares the global options on the root program. */
export function addGlobalOptions(program: Command): Command {
  return program
    .option('--repository <repo>', 'datastore directory, [[AUTHID@]HOST[:PORT]:]STORE or s3://BUCKET/STORE (env PBS_REPOSITORY)')
    .option('--ns <namespace>', 'namespace, e.g. dev or dev/sub')
    .option('--fingerprint <sha256>', "PBS server certificate's SHA-256 fingerprint aa:bb:… to pin (env PBS_FINGERPRINT)")
    .option('--keyfile <file>', 'encryption key file (passphrase from PBS_ENCRYPTION_PASSWORD[_FILE|_FD|_CMD] or a prompt)')
    .option('--master-keyfile <pem>', 'RSA master private key: recover the key from the snapshot (rsa-encrypted.key.blob)')
    .option('--output-format <format>', 'text, json or json-pretty (env PROXMOX_OUTPUT_FORMAT; default text)')
    .option('--debug', 'show stack traces on errors', false)
    .option('--s3-endpoint <url>', 'S3 endpoint for s3:// repositories (env PBS_S3_ENDPOINT; default AWS for the region)')
    .option('--s3-region <region>', 'S3 region (env AWS_REGION; default us-west-1)')
    .option('--s3-vhost-style', 'address the bucket as {bucket}.host instead of host/{bucket}');
}

/** The global options as seen from any (sub)command. */
export function globalOptions(cmd: Command): GlobalOptions {
  const o = cmd.optsWithGlobals() as Record<string, unknown>;
  const fmt = outputFormatOf(o);
  jsonErrors = fmt !== 'text';
  if (!FORMATS.includes(fmt)) {
    jsonErrors = false;
    throw new UsageError(`--output-format must be one of ${FORMATS.join(', ')}, got ${JSON.stringify(fmt)}`, { errorCode: 'option-invalid' });
  }
  if (o.keyfile !== undefined && o.masterKeyfile !== undefined) {
    throw new UsageError('give either --keyfile or --master-keyfile, not both', { errorCode: 'option-conflict' });
  }
  const repo = (o.repository as string | undefined) ?? process.env.PBS_REPOSITORY;
  return {
    repository: repo === '' ? undefined : repo,
    ns: normaliseNs(o.ns as string | undefined),
    keyfile: o.keyfile as string | undefined,
    fingerprint: o.fingerprint as string | undefined,
    masterKeyfile: o.masterKeyfile as string | undefined,
    outputFormat: fmt,
    debug: Boolean(o.debug),
    s3: { endpoint: o.s3Endpoint as string | undefined, region: o.s3Region as string | undefined, vhostStyle: o.s3VhostStyle === true },
  };
}

/** --output-format, else PROXMOX_OUTPUT_FORMAT (as upstream's tools), else text. */
function outputFormatOf(o: Record<string, unknown>): OutputFormat {
  const env = process.env.PROXMOX_OUTPUT_FORMAT;
  return String(o.outputFormat ?? (env !== undefined && env !== '' ? env : 'text')) as OutputFormat;
}

function normaliseNs(ns: string | undefined): string | undefined {
  if (ns === undefined) return undefined;
  const t = ns.replace(/^\/+|\/+$/g, '');
  return t === '' ? undefined : t;
}

/** The repository string (a datastore path, `[[AUTHID@]HOST[:PORT]:]STORE`, `s3://BUCKET/STORE`). */
export function requireRepository(g: GlobalOptions): string {
  const r = g.repository;
  if (r === undefined) {
    throw new UsageError('no repository given: use --repository PATH|[[AUTHID@]HOST[:PORT]:]STORE or set PBS_REPOSITORY', {
      errorCode: 'repository-missing',
    });
  }
  return r;
}

/** Prints `value` as JSON, or calls `text()` for the human form. */
export function printResult(g: GlobalOptions, value: unknown, text: () => string): void {
  if (g.outputFormat === 'json') process.stdout.write(JSON.stringify(value) + '\n');
  else if (g.outputFormat === 'json-pretty') process.stdout.write(JSON.stringify(value, null, 2) + '\n');
  else {
    const t = text();
    if (t !== '') process.stdout.write(t.endsWith('\n') ? t : t + '\n');
  }
}

/** Prints an aligned text table (first row = header). */
export function renderTable(allRows: string[][]): string {
  // PROXMOX_OUTPUT_NO_HEADER (upstream's switch) drops the header row.
  const noHeader = (process.env.PROXMOX_OUTPUT_NO_HEADER ?? '') !== '';
  const rows = noHeader ? allRows.slice(1) : allRows;
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ')).join('\n');
}

let debugMode = false;
/** Errors as a JSON object on stderr: set once the output format is known to be JSON. */
let jsonErrors = false;

/**
 * Reports an error the way every command does and returns the exit code: one sentence on
 * stderr, or `{"error": {"code", "message", "exit-code"}}` under a JSON output format.
 */
export function reportError(e: unknown): number {
  const known = isPbsfsError(e);
  const code = known ? e.errorCode : 'internal-error';
  const exit = known ? e.exitCode : EXIT.internal;
  const msg = e instanceof Error ? e.message : String(e);
  const text = known ? msg : `internal error: ${msg}`;
  if (jsonErrors) process.stderr.write(JSON.stringify({ error: { code, message: text, 'exit-code': exit } }) + '\n');
  else process.stderr.write(`pbsfs: ${text}\n`);
  if (debugMode && e instanceof Error && e.stack) process.stderr.write(e.stack + '\n');
  else if (!known && !jsonErrors) process.stderr.write('pbsfs: (run with --debug for details)\n');
  return exit;
}

/**
 * Wraps a command action: runs it, maps errors to one line on stderr and the right exit code.
 * The action receives the commander arguments as usual; the last one is the Command itself.
 */
export function action<A extends unknown[]>(fn: (...args: A) => Promise<void> | void): (...args: A) => Promise<void> {
  return async (...args: A) => {
    const cmd = args[args.length - 1] as Command | undefined;
    try {
      if (cmd && typeof cmd.optsWithGlobals === 'function') debugMode = Boolean(cmd.optsWithGlobals().debug);
      await fn(...args);
    } catch (e) {
      process.exitCode = reportError(e);
    }
  };
}

/** True when the command's output goes to a terminal (progress bars only then). */
export function isInteractive(stream: NodeJS.WriteStream = process.stderr): boolean {
  return Boolean(stream.isTTY) && process.env.CI !== 'true';
}
