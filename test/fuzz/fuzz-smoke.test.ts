/**
 * A bounded, deterministic run of every fuzz target (the full job is `npm run fuzz`), and a replay
 * of every saved regression input: each must decode or fail with a PbsfsError, in bounded time.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { describeError, regressionInputs, runInline, runOne, type Prepared } from './framework.js';
import { TARGETS } from './targets/index.js';

const SMOKE_SEED = 20240605;
const SMOKE_INPUTS = 40;
const TIMEOUT_MS = 10_000;

const prepared = new Map<string, Prepared>();
afterAll(async () => {
  for (const p of prepared.values()) await p.cleanup?.();
});

describe.each(TARGETS.map((t) => [t.name, t] as const))('fuzz target %s', (_name, target) => {
  it(`${SMOKE_INPUTS} generated inputs: typed errors only, no hang`, async () => {
    const p = await target.prepare();
    prepared.set(target.name, p);
    expect(p.seeds.length).toBeGreaterThan(0);
    const r = await runInline(target, p, { seed: SMOKE_SEED, iterations: SMOKE_INPUTS, timeoutMs: TIMEOUT_MS });
    const report = r.violations.map((v) => `input ${v.index}: ${describeError(v.error)}`).join('\n');
    expect(report).toBe('');
    expect([...r.counts.values()].reduce((a, b) => a + b, 0)).toBe(SMOKE_INPUTS);
  });

  it('replays the saved regression inputs', async () => {
    const p = prepared.get(target.name) ?? (await target.prepare());
    prepared.set(target.name, p);
    for (const { path, data } of regressionInputs(target.name)) {
      const o = await runOne(p, data, TIMEOUT_MS);
      expect(o.ok ? '' : `${path}: ${describeError(o.error)}`).toBe('');
    }
  });
});
