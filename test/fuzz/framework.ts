/**
 * The fuzz framework shared by every target.
 *
 * A target names a parser and says how to feed it: seed files (real vector files), an optional
 * fast-check arbitrary of structured inputs, an optional fix-up (e.g. recompute a CRC so a
 * mutation reaches the code behind the check) and `decode(input)`. The contract checked for every
 * input: decode resolves, or rejects with a PbsfsError; nothing else, within a time bound, with
 * bounded memory. Targets may also throw InvariantViolation for wrong results they can detect.
 *
 * Input number `i` of a target is a pure function of (target name, run seed, i): the watchdog in
 * run.ts rebuilds the input a hung or crashed child was working on, and saves it.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { isPbsfsError } from '../../src/errors.js';
import { mutate } from './mutate.js';
import { regressionsDir } from './paths.js';
import { Rng } from './rng.js';

export interface Seed {
  /** Names the seed in reports (a vector path). */
  name: string;
  data: Buffer;
  /** Offsets where the structure is (headers, tables): mutations favour them. */
  hot?: number[];
  /** Relative weight when picking a seed (default 1). */
  weight?: number;
}

export interface Prepared {
  seeds: Seed[];
  decode(input: Buffer): Promise<void>;
  /** Structured inputs (used for about a fifth of the inputs). */
  structured?: fc.Arbitrary<Buffer>;
  /** Applied to half of the mutated inputs, e.g. to recompute a checksum. */
  fixup?(input: Buffer, rng: Rng): Buffer;
  /** Largest input accepted from structured generation or extension (default 64 MiB). */
  maxInputBytes?: number;
  cleanup?(): Promise<void>;
}

export interface FuzzTarget {
  name: string;
  description: string;
  prepare(): Promise<Prepared>;
}

/** A wrong result the target detected itself (not a typed-error outcome). */
export class InvariantViolation extends Error {
  override name = 'InvariantViolation';
}

export type Outcome = { ok: true; label: string } | { ok: false; label: string; error: unknown };

/** Builds input number `index` of a target deterministically. */
export function makeInput(targetName: string, prepared: Prepared, runSeed: number, index: number): Buffer {
  const rng = new Rng('pbsfs-fuzz', targetName, runSeed, index);
  if (prepared.structured !== undefined && rng.chance(0.2)) {
    const [v] = fc.sample(prepared.structured, { seed: rng.u32() | 0, numRuns: 1 });
    return v!;
  }
  const out = mutate(prepared.seeds, rng, prepared.maxInputBytes ?? 64 * 1024 * 1024);
  if (prepared.fixup !== undefined && rng.chance(0.5)) return prepared.fixup(out, rng);
  return out;
}

/** Runs one input under the contract; a promise that never settles counts as a hang. */
export async function runOne(prepared: Prepared, input: Buffer, timeoutMs: number): Promise<Outcome> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<'hang'>((resolve) => {
    timer = setTimeout(() => resolve('hang'), timeoutMs);
  });
  try {
    const r = await Promise.race([prepared.decode(input).then(() => 'done' as const), hang]);
    if (r === 'hang') return { ok: false, label: 'timeout', error: new Error(`no result within ${timeoutMs} ms`) };
    return { ok: true, label: 'ok' };
  } catch (e) {
    if (isPbsfsError(e)) return { ok: true, label: e.name };
    return { ok: false, label: e instanceof Error ? e.name : typeof e, error: e };
  } finally {
    clearTimeout(timer);
  }
}

export function sha256Hex(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

export function describeError(e: unknown): string {
  if (e instanceof Error) return e.stack ?? `${e.name}: ${e.message}`;
  return String(e);
}

/** Saves a contract-violating input as a regression fixture; returns its path. */
export function saveRegression(target: string, input: Buffer, detail: string): string {
  const dir = join(regressionsDir, target);
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${sha256Hex(input)}.bin`);
  writeFileSync(path, input);
  writeFileSync(path.replace(/\.bin$/, '.txt'), detail.endsWith('\n') ? detail : detail + '\n');
  return path;
}

/** The saved regression inputs of a target. */
export function regressionInputs(target: string): { path: string; data: Buffer }[] {
  const dir = join(regressionsDir, target);
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((n) => n.endsWith('.bin'))
    .sort()
    .map((n) => ({ path: join(dir, n), data: readFileSync(join(dir, n)) }));
}

export interface InlineResult {
  counts: Map<string, number>;
  violations: { index: number; label: string; error: unknown; input: Buffer }[];
}

/** Runs inputs [start, start + iterations) in this process (the smoke test and the child runner). */
export async function runInline(
  target: FuzzTarget,
  prepared: Prepared,
  opts: { seed: number; start?: number; iterations: number; timeoutMs: number; onStart?: (index: number) => void },
): Promise<InlineResult> {
  const counts = new Map<string, number>();
  const violations: InlineResult['violations'] = [];
  const start = opts.start ?? 0;
  for (let i = start; i < start + opts.iterations; i++) {
    opts.onStart?.(i);
    const input = makeInput(target.name, prepared, opts.seed, i);
    const o = await runOne(prepared, input, opts.timeoutMs);
    const label = o.ok ? o.label : `VIOLATION ${o.label}`;
    counts.set(label, (counts.get(label) ?? 0) + 1);
    if (!o.ok) violations.push({ index: i, label: o.label, error: o.error, input });
  }
  return { counts, violations };
}
