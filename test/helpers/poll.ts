/**
 * Waiting for something that happens asynchronously (a log line written by a mount process, a
 * counter falling back to zero) by polling until a deadline, never by a fixed sleep: a fixed
 * sleep is either too short on a loaded machine or wasted time on an idle one.
 */
export async function waitFor<T>(
  probe: () => T | undefined | Promise<T | undefined>,
  what: string,
  { timeoutMs = 10_000, intervalMs = 20 } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** True when `text()` contains `needle`; for waitFor. */
export function containing(text: () => string, needle: string | RegExp): () => true | undefined {
  return () => ((typeof needle === 'string' ? text().includes(needle) : needle.test(text())) ? true : undefined);
}
