/**
 * A logger that writes each distinct message once: a damaged chunk read ten thousand times
 * (a mount, a retried copy) must not flood the log. It remembers at most `limit` keys and then
 * starts over, so memory stays bounded and a long-lived problem is reported again now and then.
 */
export class OnceLog {
  private readonly seen = new Set<string>();

  constructor(
    private readonly write: (line: string) => void,
    private readonly limit = 1000,
  ) {}

  /** Writes `line` unless `key` (default: the line itself) was written already. */
  log(line: string, key = line): void {
    if (this.seen.has(key)) return;
    if (this.seen.size > this.limit) this.seen.clear();
    this.seen.add(key);
    this.write(line);
  }
}
