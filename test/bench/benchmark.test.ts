import { describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { join } from 'node:path';
import {
  ROW_NAMES,
  UPSTREAM_REFERENCE,
  benchmarkData,
  benchmarkSequentialRead,
  runCryptoBenchmark,
} from '../../src/bench/crypto-benchmark.js';
import { NotFoundError, UsageError } from '../../src/errors.js';
import { cliPath, pxarDir } from '../helpers/paths.js';

const run = promisify(execFile);
const CPU_ROWS = ['sha256', 'compress', 'decompress', 'verify', 'verify_encrypted', 'aes256_gcm', 'aes256_gcm_decrypt'];

describe('crypto benchmark library', () => {
  it('measures every CPU row with a positive speed', () => {
    const r = runCryptoBenchmark({ seconds: 0.01, bufferSize: 64 * 1024 });
    expect(r.rows.map((x) => x.id)).toEqual(CPU_ROWS);
    for (const row of r.rows) {
      expect(row.bytes).toBeGreaterThan(0);
      expect(row.seconds).toBeGreaterThan(0);
      expect(row.speed).toBeGreaterThan(0);
      expect(row.name).toBe(ROW_NAMES[row.id]);
    }
    const refs = Object.fromEntries(r.rows.filter((x) => x.reference !== undefined).map((x) => [x.id, x.reference! / 1e6]));
    expect(refs).toEqual(UPSTREAM_REFERENCE.docs);
  });

  it('uses a counter pattern that zstd can compress', () => {
    const d = benchmarkData(16);
    expect(d.toString('hex')).toBe('00000000010000000200000003000000');
  });

  it('refuses a nonsensical time budget', () => {
    expect(() => runCryptoBenchmark({ seconds: 0 })).toThrow(UsageError);
    expect(() => runCryptoBenchmark({ seconds: Number.NaN })).toThrow(UsageError);
    expect(() => runCryptoBenchmark({ seconds: 3600 })).toThrow(UsageError);
  });

  it('reads a file sequentially and names a missing one', async () => {
    const row = await benchmarkSequentialRead(join(pxarDir, 'archive-v1.pxar'), { seconds: 0.05 });
    expect(row.id).toBe('mount_read');
    expect(row.bytes).toBeGreaterThan(0);
    expect(row.speed).toBeGreaterThan(0);
    await expect(benchmarkSequentialRead('/nonexistent/pbsfs-bench')).rejects.toThrow(NotFoundError);
    await expect(benchmarkSequentialRead('/nonexistent/pbsfs-bench')).rejects.toThrow(/nonexistent\/pbsfs-bench/);
  });
});

describe('pbsfs benchmark', () => {
  it('prints a table with every row and the upstream reference column', async () => {
    const { stdout } = await run(process.execPath, [cliPath, 'benchmark', '--seconds', '0.05']);
    for (const id of CPU_ROWS) expect(stdout).toContain(ROW_NAMES[id as keyof typeof ROW_NAMES]);
    expect(stdout).toContain('Upstream reference (PBS docs)');
    expect(stdout).toContain('2066.73 MB/s');
    expect(stdout).toMatch(/SHA256 checksum computation speed\s+\d+\.\d\d MB\/s/);
  });

  it('prints valid JSON with positive numbers, including a mount-path read', async () => {
    const file = join(pxarDir, 'archive-v1.pxar');
    const { stdout } = await run(process.execPath, [
      cliPath,
      '--output-format',
      'json',
      'benchmark',
      '--seconds',
      '0.05',
      '--mount-path',
      file,
    ]);
    const j = JSON.parse(stdout) as { 'buffer-size': number; results: { id: string; speed: number; 'mb-per-s': number }[] };
    expect(j['buffer-size']).toBe(4 * 1024 * 1024);
    expect(j.results.map((x) => x.id)).toEqual([...CPU_ROWS, 'mount_read']);
    for (const r of j.results) {
      expect(r.speed).toBeGreaterThan(0);
      expect(r['mb-per-s']).toBeGreaterThan(0);
    }
  });

  it('fails with a one-line usage error on a bad --seconds', async () => {
    const p = run(process.execPath, [cliPath, 'benchmark', '--seconds', 'abc']);
    await expect(p).rejects.toMatchObject({ code: 2, stderr: expect.stringMatching(/^pbsfs: --seconds must be a number/) });
  });
});
