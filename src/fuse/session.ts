/**
 * One FUSE connection: reads kernel requests from /dev/fuse, hands each to a dispatcher and
 * writes the reply. Requests are served concurrently (the dispatcher is async); the device is
 * read by one outstanding read at a time, which occupies one libuv thread-pool thread while the
 * mount is idle (the mount command raises UV_THREADPOOL_SIZE for that reason).
 *
 * The session ends when the kernel reports ENODEV: the filesystem was unmounted (by fusermount,
 * umount, or the last user of a lazily unmounted tree going away).
 */
import { read, writeSync, writevSync } from 'node:fs';
import type { HeldBytes } from '../io/read-at.js';
import { expectsNoReply } from './requests.js';
import { decodeInHeader, encodeOutHeader, Errno, IN_HEADER_SIZE, OUT_HEADER_SIZE, type InHeader } from './protocol.js';

/**
 * A dispatcher's answer: payload bytes (success), payload bytes lent until the reply is written
 * (released then), a negative errno, or null for "no reply".
 */
export type FuseReply = Buffer | HeldBytes | number | null;
export type FuseDispatcher = (h: InHeader, body: Buffer) => Promise<FuseReply> | FuseReply;

/** Largest request we accept (header + write_in + max_write); the kernel requires the room. */
export const MAX_WRITE = 64 * 1024;
const DEBUG = process.env.PBSFS_FUSE_DEBUG === '1';
const READ_BUFFER_SIZE = MAX_WRITE + 4096 + 256;

export class FuseSession {
  private readonly buf = Buffer.allocUnsafe(READ_BUFFER_SIZE);
  private closed = false;
  private attached = false;
  private resolveDone!: () => void;
  /** Settles when the kernel ends the connection (unmount). */
  readonly done: Promise<void>;
  /** Errors writing replies (e.g. to an interrupted request) are counted, not fatal. */
  replyErrors = 0;

  constructor(
    private readonly fd: number,
    private readonly dispatch: FuseDispatcher,
    private readonly onFatal: (e: Error) => void = () => undefined,
  ) {
    this.done = new Promise((r) => (this.resolveDone = r));
  }

  start(): void {
    this.next();
  }

  private next(): void {
    if (this.closed) return;
    read(this.fd, this.buf, 0, this.buf.length, null, (err, n) => {
      if (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EINTR' || code === 'EAGAIN' || code === 'ENOENT') return this.next();
        // Before mount(2) has attached the device, reads fail with EPERM: poll until it has.
        if (code === 'EPERM' && !this.attached && !this.closed) {
          setTimeout(() => this.next(), 2);
          return;
        }
        if (code !== 'ENODEV') this.onFatal(err);
        return this.finish();
      }
      this.attached = true;
      if (n < IN_HEADER_SIZE) return this.next();
      // Copy the request out: the read buffer is reused at once.
      const msg = Buffer.from(this.buf.subarray(0, n));
      this.next();
      this.handle(msg);
    });
  }

  private handle(msg: Buffer): void {
    const h = decodeInHeader(msg);
    if (DEBUG) process.stderr.write(`fuse: op ${h.opcode} node ${h.nodeid} pid ${h.pid}\n`);
    if (h.len !== msg.length) {
      // The header and the read disagree: nothing of the body can be trusted.
      if (!expectsNoReply(h.opcode)) this.reply(h.unique, -Errno.EINVAL);
      return;
    }
    const body = msg.subarray(IN_HEADER_SIZE);
    let r: Promise<FuseReply> | FuseReply;
    try {
      r = this.dispatch(h, body);
    } catch (e) {
      r = Promise.reject(e);
    }
    if (r instanceof Promise) {
      r.then(
        (v) => this.reply(h.unique, v),
        () => this.reply(h.unique, -5),
      );
    } else this.reply(h.unique, r);
  }

  private reply(unique: bigint, v: FuseReply): void {
    if (v === null) return;
    const held = typeof v === 'number' || Buffer.isBuffer(v) ? undefined : v;
    try {
      if (this.closed) return;
      const head = Buffer.allocUnsafe(OUT_HEADER_SIZE);
      if (typeof v === 'number') {
        encodeOutHeader(head, OUT_HEADER_SIZE, v, unique);
        writeSync(this.fd, head);
      } else {
        // One writev: the device takes a reply as exactly one write, and the data is not copied.
        const parts = held?.parts ?? [v as Buffer];
        encodeOutHeader(head, OUT_HEADER_SIZE + (held?.length ?? (v as Buffer).length), 0, unique);
        writevSync(this.fd, [head, ...parts]);
      }
    } catch {
      // ENOENT: the request was interrupted and is gone; ENODEV: unmounted meanwhile.
      this.replyErrors++;
    } finally {
      // The kernel has copied the bytes (writev is synchronous): they may be reused now.
      held?.release();
    }
  }

  /** Stops reading (after a failed mount: the device was never attached). */
  abort(): void {
    this.finish();
  }

  private finish(): void {
    if (this.closed) return;
    this.closed = true;
    this.resolveDone();
  }
}
