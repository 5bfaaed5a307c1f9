/**
 * `pbsfs benchmark`: this host's single-thread speed for the per-chunk work (see
 * src/bench/crypto-benchmark.ts), next to the figures the PBS documentation publishes.
 */
import type { Command } from 'commander';
import { action, globalOptions, printResult, renderTable } from '../context.js';
import {
  DEFAULT_SECONDS,
  UPSTREAM_REFERENCE,
  benchmarkSequentialRead,
  benchmarkToJson,
  formatSpeed,
  runCryptoBenchmark,
} from '../../bench/crypto-benchmark.js';
import { UsageError } from '../../errors.js';

interface BenchmarkOptions {
  seconds?: string;
  mountPath?: string;
}

function parseSeconds(s: string | undefined): number {
  if (s === undefined) return DEFAULT_SECONDS;
  const n = Number(s);
  if (s.trim() === '' || !Number.isFinite(n)) throw new UsageError(`--seconds must be a number, got ${JSON.stringify(s)}`);
  return n;
}

export function register(program: Command): void {
  program
    .command('benchmark')
    .description('measure SHA-256, zstd, chunk verification and AES-256-GCM speed on this host (single thread, 4 MiB buffers)')
    .option('--seconds <s>', `time per test in seconds (default ${DEFAULT_SECONDS})`)
    .option('--mount-path <file>', 'also measure a sequential read of this file (e.g. a large file in a mounted snapshot)')
    .action(
      action(async (opts: BenchmarkOptions, cmd: Command) => {
        const g = globalOptions(cmd);
        const seconds = parseSeconds(opts.seconds);
        const result = runCryptoBenchmark({ seconds });
        if (opts.mountPath !== undefined) {
          // Reads go up to a few seconds: a sequential read needs more than a CPU test to settle.
          result.rows.push(await benchmarkSequentialRead(opts.mountPath, { seconds: Math.min(seconds * 4, 60) }));
        }
        printResult(g, benchmarkToJson(result), () => {
          const table: string[][] = [['Name', 'This host', 'Upstream reference (PBS docs)']];
          for (const r of result.rows) {
            table.push([r.name, formatSpeed(r.speed), r.reference !== undefined ? formatSpeed(r.reference) : '-']);
          }
          return [
            renderTable(table),
            '',
            `Single thread, ${result.bufferSize / (1024 * 1024)} MiB buffers, about ${seconds} s per test, zstd via ${result.zstdBackend}; MB/s = 10^6 bytes/s.`,
            `Upstream reference: the example run in the ${UPSTREAM_REFERENCE.source.replace(/ \(.*\)$/, '')};`,
            `upstream compares against an ${UPSTREAM_REFERENCE.baselineCpu}. The encrypted-verification, decryption and mount rows have no upstream counterpart.`,
          ].join('\n');
        });
      }),
    );
}
