/**
 * Writing command output (file contents) to a stream that may be slow or go away: wait for
 * 'drain' when it buffers; a closed reader (e.g. `| head`) ends the write quietly, as cat(1) does.
 */
import type { Writable } from 'node:stream';

/** The reader of the output went away. */
export class OutputClosed extends Error {}

function isClosedPipe(e: unknown): boolean {
  const code = (e as { code?: string } | undefined)?.code;
  return code === 'EPIPE' || code === 'ERR_STREAM_DESTROYED' || code === 'ERR_STREAM_WRITE_AFTER_END';
}

/** Writes and waits for 'drain' when the stream buffers; stops quietly if the reader went away. */
export async function writeWithBackpressure(out: Writable, buf: Buffer): Promise<void> {
  if (out.destroyed || out.writableEnded) throw new OutputClosed();
  if (out.write(buf)) return;
  await new Promise<void>((resolve, reject) => {
    const done = (err?: unknown): void => {
      out.off('drain', onDrain);
      out.off('close', onClose);
      out.off('error', onError);
      if (err === undefined) resolve();
      else reject(err instanceof Error ? err : new Error(String(err)));
    };
    const onDrain = (): void => done();
    const onClose = (): void => done(new OutputClosed());
    const onError = (e: unknown): void => done(isClosedPipe(e) ? new OutputClosed() : e);
    out.on('drain', onDrain);
    out.on('close', onClose);
    out.on('error', onError);
  });
}
