/**
 * `npm run fuzz`: mutation and structured fuzzing of every parser.
 *
 *   node dist/test/fuzz/run.js [--iterations N] [--target NAME[,NAME]] [--seed S] [--timeout-ms T]
 *                              [--mem-mb M] [--jobs J]
 *
 * Each target runs in a child process. The child writes the index of the input it is working on
 * to a progress file before decoding it; the parent watches that file and the child's RSS. A
 * child stuck on one input (a synchronous hang), using too much memory, or dying (a native
 * crash, an out-of-memory abort) is killed and restarted after that input; the parent rebuilds
 * the input from (target, seed, index) and saves it. Exceptions other than PbsfsError and async
 * hangs are caught in the child, which saves the input itself. Saved inputs go to
 * test/fuzz/regressions/<target>/<sha256>.bin (with a .txt saying what happened); the smoke test
 * replays them. Exit status 1 on any contract violation.
 */
import { fork } from 'node:child_process';
import { closeSync, openSync, readFileSync, readSync, rmSync, writeSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describeError, makeInput, runOne, saveRegression, type FuzzTarget } from './framework.js';
import { TARGETS, findTarget } from './targets/index.js';

interface Options {
  iterations: number;
  targets: FuzzTarget[];
  seed: number;
  timeoutMs: number;
  memMb: number;
  jobs: number;
}

type ChildMessage =
  | { type: 'counts'; upTo: number; counts: Record<string, number> }
  | { type: 'violation'; index: number; label: string; path: string; detail: string }
  | { type: 'done'; counts: Record<string, number> };

function parseArgs(argv: string[]): Options & { child: boolean; start: number; end: number; skip: number[]; progress: string } {
  const o = {
    iterations: 100_000,
    targets: TARGETS,
    seed: 1,
    timeoutMs: 5000,
    memMb: 2048,
    jobs: Math.max(1, Math.min(2, cpus().length)),
    child: false,
    start: 0,
    end: 0,
    skip: [] as number[],
    progress: '',
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const val = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    const int = (): number => {
      const v = Number(val());
      if (!Number.isSafeInteger(v) || v < 0) throw new Error(`${a} needs a non-negative integer`);
      return v;
    };
    if (a === '--iterations') o.iterations = int();
    else if (a === '--target') o.targets = val().split(',').map(findTarget);
    else if (a === '--seed') o.seed = int();
    else if (a === '--timeout-ms') o.timeoutMs = int();
    else if (a === '--mem-mb') o.memMb = int();
    else if (a === '--jobs') o.jobs = Math.max(1, int());
    else if (a === '--child') o.child = true;
    else if (a === '--start') o.start = int();
    else if (a === '--end') o.end = int();
    else if (a === '--skip') o.skip = val().split(',').filter(Boolean).map(Number);
    else if (a === '--progress') o.progress = val();
    else if (a === '--help' || a === '-h') {
      process.stdout.write(`usage: run.js [--iterations N] [--target ${TARGETS.map((t) => t.name).join('|')}[,...]] [--seed S] [--timeout-ms T] [--mem-mb M] [--jobs J]\n`);
      process.exit(0);
    } else throw new Error(`unknown option ${a}`);
  }
  return o;
}

// ---------------------------------------------------------------- child: runs one target's inputs

async function child(o: ReturnType<typeof parseArgs>): Promise<void> {
  const target = o.targets[0]!;
  const prepared = await target.prepare();
  const fd = openSync(o.progress, 'r+');
  const mark = Buffer.alloc(8);
  const skip = new Set(o.skip);
  const counts: Record<string, number> = {};
  // Big transient buffers (a decompression bomb stopped at its limit) are garbage at once, but V8
  // may collect them late: collect when RSS passes a share of the limit, so that the parent's
  // RSS watchdog reports real growth (a leak or one huge input), not collection lag.
  const gc = (globalThis as { gc?: () => void }).gc;
  const gcAt = o.memMb * 0.35 * 1024 * 1024;
  const send = (m: ChildMessage): Promise<void> => new Promise((resolve) => process.send!(m, () => resolve()));
  try {
    for (let i = o.start; i < o.end; i++) {
      if (skip.has(i)) continue;
      if (gc !== undefined && (i & 7) === 0 && process.memoryUsage.rss() > gcAt) gc();
      mark.writeDoubleLE(i, 0);
      writeSync(fd, mark, 0, 8, 0);
      const input = makeInput(target.name, prepared, o.seed, i);
      const r = await runOne(prepared, input, o.timeoutMs);
      const label = r.ok ? r.label : `VIOLATION ${r.label}`;
      counts[label] = (counts[label] ?? 0) + 1;
      if (!r.ok) {
        const detail = `target ${target.name}, seed ${o.seed}, input ${i} (${input.length} bytes)\n${describeError(r.error)}`;
        const path = saveRegression(target.name, input, detail);
        await send({ type: 'violation', index: i, label: r.label, path, detail });
        if (r.label === 'timeout') {
          // The stuck decode may still be running in the background: start afresh.
          await send({ type: 'counts', upTo: i + 1, counts });
          process.exit(3);
        }
      }
      if ((i + 1 - o.start) % 500 === 0) await send({ type: 'counts', upTo: i + 1, counts });
    }
  } finally {
    closeSync(fd);
    await prepared.cleanup?.();
  }
  await send({ type: 'done', counts });
}

// ---------------------------------------------------------------- parent: watchdog and report

interface TargetResult {
  target: string;
  inputs: number;
  counts: Record<string, number>;
  violations: { index: number; label: string; path: string; detail: string }[];
  seconds: number;
}

function rssMb(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

function addCounts(into: Record<string, number>, from: Record<string, number>): void {
  for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + v;
}

/** Runs one child over [start, end) and reports how far it got. */
function runChild(
  target: FuzzTarget,
  o: Options,
  start: number,
  skip: number[],
  progress: string,
  onViolation: (v: TargetResult['violations'][number]) => void,
): Promise<{ done: boolean; upTo: number; counts: Record<string, number>; stuckAt?: number; why?: string }> {
  return new Promise((resolve) => {
    const fd = openSync(progress, 'w+');
    writeSync(fd, Buffer.alloc(8));
    const self = fileURLToPath(import.meta.url);
    const args = ['--child', '--target', target.name, '--seed', String(o.seed), '--start', String(start), '--end', String(o.iterations),
      '--timeout-ms', String(o.timeoutMs), '--mem-mb', String(o.memMb), '--progress', progress, '--skip', skip.join(',')];
    const c = fork(self, args, { execArgv: ['--expose-gc', `--max-old-space-size=${Math.max(256, Math.floor(o.memMb / 2))}`], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    let last = { upTo: start, counts: {} as Record<string, number> };
    let done: Record<string, number> | undefined;
    let seen = -1;
    let since = Date.now();
    let killedFor: string | undefined;
    const buf = Buffer.alloc(8);
    const current = (): number => {
      readSync(fd, buf, 0, 8, 0);
      return buf.readDoubleLE(0);
    };
    const watch = setInterval(() => {
      const i = current();
      if (i !== seen) {
        seen = i;
        since = Date.now();
      } else if (Date.now() - since > o.timeoutMs + 3000) {
        killedFor = `hang: no progress for ${Date.now() - since} ms`;
        c.kill('SIGKILL');
      }
      const rss = rssMb(c.pid ?? 0);
      if (rss > o.memMb) {
        killedFor = `memory: RSS ${rss.toFixed(0)} MiB exceeds ${o.memMb} MiB`;
        c.kill('SIGKILL');
      }
    }, 200);
    c.on('message', (m: ChildMessage) => {
      if (m.type === 'counts') last = { upTo: m.upTo, counts: m.counts };
      else if (m.type === 'violation') onViolation({ index: m.index, label: m.label, path: m.path, detail: m.detail });
      else done = m.counts;
    });
    c.on('exit', (code, signal) => {
      clearInterval(watch);
      const at = current();
      closeSync(fd);
      if (done !== undefined) return resolve({ done: true, upTo: o.iterations, counts: done });
      if (code === 3 && killedFor === undefined) return resolve({ done: false, upTo: last.upTo, counts: last.counts }); // async timeout, already saved
      resolve({ done: false, upTo: last.upTo, counts: last.counts, stuckAt: at, why: killedFor ?? `child died (exit code ${code}, signal ${signal})` });
    });
  });
}

async function runTarget(target: FuzzTarget, o: Options): Promise<TargetResult> {
  const t0 = Date.now();
  const progress = join(tmpdir(), `pbsfs-fuzz-${process.pid}-${target.name}.progress`);
  const res: TargetResult = { target: target.name, inputs: 0, counts: {}, violations: [], seconds: 0 };
  const skip: number[] = [];
  let start = 0;
  let prepared: Awaited<ReturnType<FuzzTarget['prepare']>> | undefined;
  for (let restarts = 0; start < o.iterations; restarts++) {
    const r = await runChild(target, o, start, skip, progress, (v) => {
      res.violations.push(v);
      skip.push(v.index);
      process.stdout.write(`  ${target.name}: VIOLATION (${v.label}) at input ${v.index}, saved ${v.path}\n${indent(v.detail)}\n`);
    });
    addCounts(res.counts, r.counts);
    if (r.done) break;
    if (r.stuckAt !== undefined && r.why !== undefined && !skip.includes(r.stuckAt)) {
      // Rebuild the input the child was on and save it.
      prepared ??= await target.prepare();
      let input: Buffer;
      try {
        input = makeInput(target.name, prepared, o.seed, r.stuckAt);
      } catch (e) {
        // The generator itself failed (a harness bug): report it, there is no input to save.
        input = Buffer.from(`input generation failed: ${describeError(e)}`);
      }
      const detail = `target ${target.name}, seed ${o.seed}, input ${r.stuckAt} (${input.length} bytes)\n${r.why}`;
      const path = saveRegression(target.name, input, detail);
      const label = r.why.split(':')[0]!;
      res.violations.push({ index: r.stuckAt, label, path, detail });
      res.counts[`VIOLATION ${label}`] = (res.counts[`VIOLATION ${label}`] ?? 0) + 1;
      skip.push(r.stuckAt);
      process.stdout.write(`  ${target.name}: VIOLATION (${r.why}) at input ${r.stuckAt}, saved ${path}\n`);
    }
    start = r.upTo;
    if (restarts > 50) {
      process.stdout.write(`  ${target.name}: too many restarts, giving up at input ${start}\n`);
      break;
    }
  }
  await prepared?.cleanup?.();
  rmSync(progress, { force: true });
  res.inputs = Object.values(res.counts).reduce((a, b) => a + b, 0);
  res.seconds = (Date.now() - t0) / 1000;
  return res;
}

function indent(s: string): string {
  return s
    .split('\n')
    .slice(0, 12)
    .map((l) => `      ${l}`)
    .join('\n');
}

function formatResult(r: TargetResult): string {
  const parts = Object.entries(r.counts)
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ${v}`);
  return `${r.target.padEnd(16)} ${String(r.inputs).padStart(7)} inputs in ${r.seconds.toFixed(1).padStart(6)} s: ${parts.join(', ')}`;
}

async function parent(o: Options): Promise<number> {
  process.stdout.write(`fuzzing ${o.targets.length} target(s), ${o.iterations} inputs each, seed ${o.seed}, ${o.jobs} job(s)\n`);
  const queue = [...o.targets];
  const results: TargetResult[] = [];
  const worker = async (): Promise<void> => {
    for (let t = queue.shift(); t !== undefined; t = queue.shift()) {
      const r = await runTarget(t, o);
      results.push(r);
      process.stdout.write(formatResult(r) + '\n');
    }
  };
  await Promise.all(Array.from({ length: o.jobs }, () => worker()));
  const bad = results.filter((r) => r.violations.length > 0);
  process.stdout.write('\nsummary\n');
  for (const t of o.targets) process.stdout.write(formatResult(results.find((r) => r.target === t.name)!) + '\n');
  if (bad.length > 0) {
    process.stdout.write(`\ncontract violations in ${bad.map((r) => `${r.target} (${r.violations.length})`).join(', ')}\n`);
    return 1;
  }
  process.stdout.write('\nno contract violations\n');
  return 0;
}

const opts = parseArgs(process.argv.slice(2));
if (opts.child) {
  if (opts.end === 0) opts.end = opts.iterations;
  await child(opts);
  process.exit(0);
} else {
  process.exitCode = await parent(opts);
}
