/**
 * The request table: for every opcode pbsfs answers, the size of its fixed part and a typed
 * decoder (modelled on go-fuse's `opcode.go`). The adapter sees decoded requests only, so a
 * request shorter than its opcode's structure, or a name without its terminating NUL, is answered
 * EINVAL instead of being read past its end or misread; an opcode missing from the table is
 * answered ENOSYS. Sizes are those of `include/uapi/linux/fuse.h`; where older protocol minors
 * sent a shorter structure, the table takes the shorter size and reads only the fields it has.
 */
import { Op } from './protocol.js';

export interface InitRequest {
  major: number;
  minor: number;
  maxReadahead: number;
  flags: number;
  /** flags2 (protocol 7.36+, when INIT_EXT is set in flags), else 0. */
  flags2: number;
}
export interface NameRequest {
  name: Buffer;
}
export interface ForgetRequest {
  nlookup: number;
}
export interface BatchForgetRequest {
  items: { nodeid: number; nlookup: number }[];
}
export interface OpenRequest {
  flags: number;
}
export interface ReadRequest {
  fh: number;
  offset: number;
  size: number;
}
export interface HandleRequest {
  fh: number;
}
export interface GetxattrRequest {
  size: number;
  name: Buffer;
}
export interface SizeRequest {
  size: number;
}
export type NoBody = Record<string, never>;

/** Why a request could not be decoded (answered EINVAL). */
export class MalformedRequest extends Error {}

const INIT_EXT = 1 << 30;
const FORGET_ONE_SIZE = 16;

function u64(b: Buffer, off: number): number {
  return Number(b.readBigUInt64LE(off));
}

/** A NUL-terminated name starting at `from`: the terminator must be inside the request. */
function cname(body: Buffer, from: number): Buffer {
  const nul = body.indexOf(0, from);
  if (nul < 0) throw new MalformedRequest('name without its terminating NUL');
  return body.subarray(from, nul);
}

interface Entry<T> {
  readonly name: string;
  /** Bytes of the fixed part the decoder reads. */
  readonly minBody: number;
  /** FORGET and BATCH_FORGET: the kernel expects no reply at all. */
  readonly noReply?: boolean;
  decode(body: Buffer): T;
}

const none = (): NoBody => ({});

/** The opcodes pbsfs decodes; everything else answers ENOSYS (write-type ones EROFS first). */
export const REQUESTS = {
  [Op.INIT]: {
    name: 'INIT',
    minBody: 16,
    decode: (b: Buffer): InitRequest => {
      const flags = b.readUInt32LE(12);
      return {
        major: b.readUInt32LE(0),
        minor: b.readUInt32LE(4),
        maxReadahead: b.readUInt32LE(8),
        flags,
        flags2: (flags & INIT_EXT) !== 0 && b.length >= 20 ? b.readUInt32LE(16) : 0,
      };
    },
  } satisfies Entry<InitRequest>,
  [Op.LOOKUP]: { name: 'LOOKUP', minBody: 1, decode: (b: Buffer): NameRequest => ({ name: cname(b, 0) }) } satisfies Entry<NameRequest>,
  [Op.FORGET]: {
    name: 'FORGET',
    minBody: 8,
    noReply: true,
    decode: (b: Buffer): ForgetRequest => ({ nlookup: u64(b, 0) }),
  } satisfies Entry<ForgetRequest>,
  [Op.BATCH_FORGET]: {
    name: 'BATCH_FORGET',
    minBody: 8,
    noReply: true,
    decode: (b: Buffer): BatchForgetRequest => {
      const count = b.readUInt32LE(0);
      if (8 + count * FORGET_ONE_SIZE > b.length) throw new MalformedRequest(`${count} forgets do not fit in ${b.length} bytes`);
      const items: BatchForgetRequest['items'] = [];
      for (let i = 0, off = 8; i < count; i++, off += FORGET_ONE_SIZE) items.push({ nodeid: u64(b, off), nlookup: u64(b, off + 8) });
      return { items };
    },
  } satisfies Entry<BatchForgetRequest>,
  [Op.GETATTR]: { name: 'GETATTR', minBody: 0, decode: none } satisfies Entry<NoBody>,
  [Op.READLINK]: { name: 'READLINK', minBody: 0, decode: none } satisfies Entry<NoBody>,
  [Op.OPEN]: { name: 'OPEN', minBody: 4, decode: (b: Buffer): OpenRequest => ({ flags: b.readUInt32LE(0) }) } satisfies Entry<OpenRequest>,
  // fuse_read_in: 24 bytes before protocol 7.9, 40 since; fh, offset and size lead both.
  [Op.READ]: { name: 'READ', minBody: 24, decode: readIn } satisfies Entry<ReadRequest>,
  // fuse_release_in: 16 bytes before 7.8, 24 since.
  [Op.RELEASE]: { name: 'RELEASE', minBody: 16, decode: handleIn } satisfies Entry<HandleRequest>,
  [Op.OPENDIR]: { name: 'OPENDIR', minBody: 4, decode: (b: Buffer): OpenRequest => ({ flags: b.readUInt32LE(0) }) } satisfies Entry<OpenRequest>,
  [Op.READDIR]: { name: 'READDIR', minBody: 24, decode: readIn } satisfies Entry<ReadRequest>,
  [Op.READDIRPLUS]: { name: 'READDIRPLUS', minBody: 24, decode: readIn } satisfies Entry<ReadRequest>,
  [Op.RELEASEDIR]: { name: 'RELEASEDIR', minBody: 16, decode: handleIn } satisfies Entry<HandleRequest>,
  [Op.GETXATTR]: {
    name: 'GETXATTR',
    minBody: 9,
    decode: (b: Buffer): GetxattrRequest => ({ size: b.readUInt32LE(0), name: cname(b, 8) }),
  } satisfies Entry<GetxattrRequest>,
  [Op.LISTXATTR]: { name: 'LISTXATTR', minBody: 8, decode: (b: Buffer): SizeRequest => ({ size: b.readUInt32LE(0) }) } satisfies Entry<SizeRequest>,
  [Op.STATFS]: { name: 'STATFS', minBody: 0, decode: none } satisfies Entry<NoBody>,
  [Op.FLUSH]: { name: 'FLUSH', minBody: 0, decode: none } satisfies Entry<NoBody>,
  [Op.FSYNC]: { name: 'FSYNC', minBody: 0, decode: none } satisfies Entry<NoBody>,
  [Op.FSYNCDIR]: { name: 'FSYNCDIR', minBody: 0, decode: none } satisfies Entry<NoBody>,
  [Op.INTERRUPT]: { name: 'INTERRUPT', minBody: 0, noReply: true, decode: none } satisfies Entry<NoBody>,
  [Op.DESTROY]: { name: 'DESTROY', minBody: 0, decode: none } satisfies Entry<NoBody>,
} as const;

function readIn(b: Buffer): ReadRequest {
  return { fh: u64(b, 0), offset: u64(b, 8), size: b.readUInt32LE(16) };
}

function handleIn(b: Buffer): HandleRequest {
  return { fh: u64(b, 0) };
}

export type KnownOp = keyof typeof REQUESTS;
export type RequestOf<O extends KnownOp> = ReturnType<(typeof REQUESTS)[O]['decode']>;

/** A decoded request: its opcode and its typed body. */
export type DecodedRequest = { [O in KnownOp]: { op: O; body: RequestOf<O> } }[KnownOp];

export function isKnownOp(opcode: number): opcode is KnownOp {
  return Object.hasOwn(REQUESTS, opcode);
}

/** True for requests the kernel expects no reply to, whatever happens to them. */
export function expectsNoReply(opcode: number): boolean {
  return isKnownOp(opcode) && (REQUESTS[opcode] as Entry<unknown>).noReply === true;
}

/**
 * Decodes `body` for `opcode`. Undefined for an opcode outside the table; MalformedRequest when
 * the body is shorter than its structure or a name lacks its NUL.
 */
export function decodeRequest(opcode: number, body: Buffer): DecodedRequest | undefined {
  if (!isKnownOp(opcode)) return undefined;
  const entry = REQUESTS[opcode] as Entry<unknown>;
  if (body.length < entry.minBody) throw new MalformedRequest(`${entry.name} of ${body.length} bytes, at least ${entry.minBody} expected`);
  return { op: opcode, body: entry.decode(body) } as DecodedRequest;
}
