/**
 * Typed errors shared by every layer.
 *
 * Every failure that comes from bad input (a damaged datastore, a wrong key, a hostile archive)
 * is a PbsfsError: it names the file (and, where it helps, the byte offset) and says what is
 * wrong in one sentence. Anything else escaping a parser is a bug. The CLI prints `message`
 * alone and exits with `exitCode`; the FUSE adapter maps `errno`.
 */
export type ErrorKind =
  | 'format' // structurally invalid bytes (bad magic, truncated, out-of-range offset)
  | 'integrity' // checksum / digest / CRC / csum mismatch
  | 'crypto' // wrong key, GCM tag failure, wrong passphrase, missing key
  | 'not-found' // snapshot, archive, path or chunk does not exist
  | 'usage' // bad command-line input
  | 'unsupported' // valid but not something we handle
  | 'io' // the operating system refused something
  | 'limit'; // a safety bound was hit (decompression bomb, nesting, table size)

export interface ErrorContext {
  /** The file (path inside the datastore, archive name, or path inside an archive). */
  file?: string;
  /** Byte offset inside `file` where the problem was found. */
  offset?: number | bigint;
  cause?: unknown;
  /** The condition's stable code (docs/cli.md lists them); default: the kind's own code. */
  errorCode?: string;
}

const EXIT_CODES: Record<ErrorKind, number> = {
  format: 3,
  integrity: 3,
  crypto: 2,
  'not-found': 4,
  usage: 2,
  unsupported: 5,
  io: 6,
  limit: 3,
};

/** The stable code of an error that names no narrower condition. */
const KIND_CODES: Record<ErrorKind, string> = {
  format: 'format-error',
  integrity: 'integrity-error',
  crypto: 'crypto-error',
  'not-found': 'not-found',
  usage: 'usage-error',
  unsupported: 'unsupported',
  io: 'io-error',
  limit: 'limit-exceeded',
};

/** Conditions whose exit status is not their kind's: a missing chunk is damage, not a lookup miss. */
const CODE_EXIT_CODES: Record<string, number> = { 'chunk-missing': 3 };

const ERRNO: Record<ErrorKind, string> = {
  format: 'EIO',
  integrity: 'EIO',
  crypto: 'EIO',
  'not-found': 'ENOENT',
  usage: 'EINVAL',
  unsupported: 'EOPNOTSUPP',
  io: 'EIO',
  limit: 'EIO',
};

export class PbsfsError extends Error {
  readonly kind: ErrorKind;
  readonly file: string | undefined;
  readonly offset: number | bigint | undefined;
  /** Stable code of the condition, e.g. `snapshot-not-found` (printed in JSON errors). */
  readonly errorCode: string;

  constructor(kind: ErrorKind, problem: string, ctx: ErrorContext = {}) {
    super(formatMessage(problem, ctx), ctx.cause !== undefined ? { cause: ctx.cause } : undefined);
    this.name = new.target.name;
    this.kind = kind;
    this.file = ctx.file;
    this.offset = ctx.offset;
    this.errorCode = ctx.errorCode ?? KIND_CODES[kind];
  }

  /** Process exit status for the CLI: 2 or more, by condition, else by kind. */
  get exitCode(): number {
    return CODE_EXIT_CODES[this.errorCode] ?? EXIT_CODES[this.kind];
  }

  /** errno name the FUSE adapter answers with. */
  get errno(): string {
    return ERRNO[this.kind];
  }
}

function formatMessage(problem: string, ctx: ErrorContext): string {
  if (ctx.file === undefined) return problem;
  const where = ctx.offset !== undefined ? `${ctx.file} at offset ${ctx.offset}` : ctx.file;
  return `${where}: ${problem}`;
}

/** Bytes that do not follow the format. */
export class FormatError extends PbsfsError {
  constructor(problem: string, ctx: ErrorContext = {}) {
    super('format', problem, ctx);
  }
}

/** A checksum, CRC, digest or signature does not match. */
export class IntegrityError extends PbsfsError {
  constructor(problem: string, ctx: ErrorContext = {}) {
    super('integrity', problem, ctx);
  }
}

/** Wrong key, wrong passphrase, failed authentication, missing key. */
export class CryptoError extends PbsfsError {
  constructor(problem: string, ctx: ErrorContext = {}) {
    super('crypto', problem, ctx);
  }
}

export class NotFoundError extends PbsfsError {
  constructor(problem: string, ctx: ErrorContext = {}) {
    super('not-found', problem, ctx);
  }
}

export class UsageError extends PbsfsError {
  constructor(problem: string, ctx: ErrorContext = {}) {
    super('usage', problem, ctx);
  }
}

export class UnsupportedError extends PbsfsError {
  constructor(problem: string, ctx: ErrorContext = {}) {
    super('unsupported', problem, ctx);
  }
}

/** A safety bound was exceeded (decompression bomb, nesting depth, table size). */
export class LimitError extends PbsfsError {
  constructor(problem: string, ctx: ErrorContext = {}) {
    super('limit', problem, ctx);
  }
}

/** The operating system refused an operation (wraps a Node system error). */
export class IoError extends PbsfsError {
  readonly syscallCode: string | undefined;
  constructor(problem: string, ctx: ErrorContext & { code?: string } = {}) {
    super('io', problem, ctx);
    this.syscallCode = ctx.code;
  }
}

/**
 * An error of the same class and kind as `e` with a new message and context (adding what a
 * layer above knows, e.g. which chunk of which archive), or undefined when that class cannot be
 * rebuilt from a message and a context.
 */
export function rewrapError(e: PbsfsError, problem: string, ctx: ErrorContext): PbsfsError | undefined {
  const Ctor = e.constructor as new (problem: string, ctx: ErrorContext & { code?: string }) => PbsfsError;
  try {
    const withCode = { errorCode: e.errorCode, ...ctx };
    const wrapped = new Ctor(problem, e instanceof IoError && e.syscallCode !== undefined ? { ...withCode, code: e.syscallCode } : withCode);
    return wrapped.kind === e.kind ? wrapped : undefined;
  } catch {
    return undefined;
  }
}

export function isPbsfsError(e: unknown): e is PbsfsError {
  return e instanceof PbsfsError;
}

/** Wraps a Node fs error in an IoError / NotFoundError naming the file. */
export function fromSystemError(e: unknown, file: string, action: string): PbsfsError {
  if (e instanceof PbsfsError) return e;
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT') return new NotFoundError(`${action}: no such file or directory`, { file, cause: e });
  const detail = e instanceof Error ? e.message.replace(/^[A-Z]+: /, '') : String(e);
  return new IoError(`${action}: ${detail}`, { file, cause: e, ...(code !== undefined ? { code } : {}) });
}
