/**
 * pxar format constants (spec pxar-format.md §2, §3, §6, §13): item types, the header and
 * goodbye-record sizes, mode bits, per-file flags, and the per-type content size limits.
 *
 * Representation: item types are `bigint` (u64 as read by `Buffer.readBigUInt64LE`). A header is
 * read once per item, so one BigInt per item is cheap next to the I/O, and bigint constants
 * compare with `===` and work in `switch`. Every constant is the SipHash-2-4 of the magic string
 * in PXAR_MAGIC_STRINGS (test/pxar/siphash.test.ts regenerates them).
 */

export const PXAR = {
  FORMAT_VERSION: 0x730f6c75df16a40dn,
  ENTRY: 0xd5956474e588acefn,
  ENTRY_V1: 0x11da850a1c1cceffn,
  PRELUDE: 0xe309d79d9f7b771bn,
  FILENAME: 0x16701121063917b3n,
  SYMLINK: 0x27f971e7dbf5dc5fn,
  DEVICE: 0x9fc9e906586d5ce9n,
  XATTR: 0x0dab0229b57dcd03n,
  ACL_USER: 0x2ce8540a457d55b8n,
  ACL_GROUP: 0x136e3eceb04c03abn,
  ACL_GROUP_OBJ: 0x10868031e9582876n,
  ACL_DEFAULT: 0xbbbb13415a6896f5n,
  ACL_DEFAULT_USER: 0xc89357b40532cd1fn,
  ACL_DEFAULT_GROUP: 0xf90a8a5816038ffen,
  FCAPS: 0x2da9dd9db5f7fb67n,
  QUOTA_PROJID: 0xe07540e82f7d1cbbn,
  HARDLINK: 0x51269c8422bd7275n,
  PAYLOAD: 0x28147a1b0b7c1a25n,
  PAYLOAD_REF: 0x419d3d6bc4ba977en,
  GOODBYE: 0x2fec4fa642d5731dn,
  GOODBYE_TAIL_MARKER: 0xef5eed5b753e1555n,
  PAYLOAD_START_MARKER: 0x834c68c2194a4ed2n,
  PAYLOAD_TAIL_MARKER: 0x6c72b78b984c81b5n,
} as const;

export type PxarTypeName = keyof typeof PXAR;

/** The strings whose SipHash gives each constant (pxar examples/mk-format-hashes.rs). */
export const PXAR_MAGIC_STRINGS: Record<PxarTypeName, string> = {
  FORMAT_VERSION: '__PROXMOX_FORMAT_VERSION__',
  ENTRY: '__PROXMOX_FORMAT_ENTRY_V2__',
  ENTRY_V1: '__PROXMOX_FORMAT_ENTRY__',
  PRELUDE: '__PROXMOX_FORMAT_PRELUDE__',
  FILENAME: '__PROXMOX_FORMAT_FILENAME__',
  SYMLINK: '__PROXMOX_FORMAT_SYMLINK__',
  DEVICE: '__PROXMOX_FORMAT_DEVICE__',
  XATTR: '__PROXMOX_FORMAT_XATTR__',
  ACL_USER: '__PROXMOX_FORMAT_ACL_USER__',
  ACL_GROUP: '__PROXMOX_FORMAT_ACL_GROUP__',
  ACL_GROUP_OBJ: '__PROXMOX_FORMAT_ACL_GROUP_OBJ__',
  ACL_DEFAULT: '__PROXMOX_FORMAT_ACL_DEFAULT__',
  ACL_DEFAULT_USER: '__PROXMOX_FORMAT_ACL_DEFAULT_USER__',
  ACL_DEFAULT_GROUP: '__PROXMOX_FORMAT_ACL_DEFAULT_GROUP__',
  FCAPS: '__PROXMOX_FORMAT_FCAPS__',
  QUOTA_PROJID: '__PROXMOX_FORMAT_QUOTA_PROJID__',
  HARDLINK: '__PROXMOX_FORMAT_HARDLINK__',
  PAYLOAD: '__PROXMOX_FORMAT_PXAR_PAYLOAD__',
  PAYLOAD_REF: '__PROXMOX_FORMAT_PXAR_PAYLOAD_REF__',
  GOODBYE: '__PROXMOX_FORMAT_GOODBYE__',
  GOODBYE_TAIL_MARKER: '__PROXMOX_FORMAT_PXAR_GOODBYE_TAIL_MARKER__',
  PAYLOAD_START_MARKER: '__PROXMOX_FORMAT_PXAR_PAYLOAD_START_MARKER__',
  PAYLOAD_TAIL_MARKER: '__PROXMOX_FORMAT_PXAR_PAYLOAD_TAIL_MARKER__',
};

const NAME_BY_TYPE = new Map<bigint, PxarTypeName>(
  (Object.keys(PXAR) as PxarTypeName[]).map((k) => [PXAR[k], k]),
);

/** "FILENAME", or the hex value for an unknown type (for error messages). */
export function pxarTypeName(htype: bigint): string {
  return NAME_BY_TYPE.get(htype) ?? `unknown type 0x${htype.toString(16).padStart(16, '0')}`;
}

/** Every item starts with htype u64 + full_size u64 (full_size includes these 16 bytes). */
export const HEADER_SIZE = 16;
/** One goodbye record: hash u64, offset u64, size u64. */
export const GOODBYE_ITEM_SIZE = 24;
/** Content sizes of the fixed layouts. */
export const ENTRY_SIZE = 40;
export const ENTRY_V1_SIZE = 32;
export const DEVICE_SIZE = 16;
export const PAYLOAD_REF_SIZE = 16;
export const ACL_USER_SIZE = 16;
export const ACL_GROUP_SIZE = 16;
export const ACL_GROUP_OBJ_SIZE = 8;
export const ACL_DEFAULT_SIZE = 32;
export const QUOTA_PROJID_SIZE = 8;
export const FORMAT_VERSION_SIZE = 8;

/** Path and name limits (pxar util.rs). */
export const MAX_PATH_LEN = 4096;
export const MAX_FILENAME_LEN = 4096;
export const MAX_XATTR_LEN = 255 + 65536;

/**
 * Largest content size accepted per type (spec §3 "reference check"; fixed layouts are checked
 * for exact size by the decoders). Types absent here have no upper bound of their own.
 */
export const MAX_CONTENT_SIZE = new Map<bigint, number>([
  [PXAR.ENTRY, ENTRY_SIZE],
  [PXAR.ENTRY_V1, ENTRY_V1_SIZE],
  [PXAR.FORMAT_VERSION, FORMAT_VERSION_SIZE],
  [PXAR.FILENAME, MAX_FILENAME_LEN + 1],
  [PXAR.SYMLINK, MAX_PATH_LEN + 1],
  [PXAR.DEVICE, DEVICE_SIZE],
  [PXAR.XATTR, MAX_XATTR_LEN],
  [PXAR.ACL_USER, ACL_USER_SIZE],
  [PXAR.ACL_GROUP, ACL_GROUP_SIZE],
  [PXAR.ACL_GROUP_OBJ, ACL_GROUP_OBJ_SIZE],
  [PXAR.ACL_DEFAULT, ACL_DEFAULT_SIZE],
  [PXAR.ACL_DEFAULT_USER, ACL_USER_SIZE],
  [PXAR.ACL_DEFAULT_GROUP, ACL_GROUP_SIZE],
  [PXAR.FCAPS, MAX_XATTR_LEN],
  [PXAR.QUOTA_PROJID, QUOTA_PROJID_SIZE],
  [PXAR.HARDLINK, 8 + MAX_PATH_LEN + 1],
  [PXAR.PAYLOAD_REF, PAYLOAD_REF_SIZE],
  [PXAR.PAYLOAD_START_MARKER, 0],
  [PXAR.PAYLOAD_TAIL_MARKER, 0],
]);

/** st_mode bits (octal, fixed by the format). */
export const MODE = {
  IFMT: 0o170000,
  IFSOCK: 0o140000,
  IFLNK: 0o120000,
  IFREG: 0o100000,
  IFBLK: 0o060000,
  IFDIR: 0o040000,
  IFCHR: 0o020000,
  IFIFO: 0o010000,
  ISUID: 0o4000,
  ISGID: 0o2000,
  ISVTX: 0o1000,
} as const;

/** Per-file attribute bits stored in ENTRY.flags (spec §13.2). */
export const FLAGS = {
  HIDDEN: 0x2000,
  SYSTEM: 0x4000,
  ARCHIVE: 0x8000,
  APPEND: 0x10000,
  NOATIME: 0x20000,
  COMPR: 0x40000,
  NOCOW: 0x80000,
  NODUMP: 0x100000,
  DIRSYNC: 0x200000,
  IMMUTABLE: 0x400000,
  SYNC: 0x800000,
  NOCOMP: 0x1000000,
  PROJINHERIT: 0x2000000,
} as const;

/** ACL permission bits and the "not set" marker used in ACL_DEFAULT. */
export const ACL_PERM = { READ: 4, WRITE: 2, EXECUTE: 1 } as const;
export const ACL_NO_MASK = 0xffffffffffffffffn;

/**
 * Linux dev_t from major/minor (glibc makedev), as a u64 BigInt: large majors put bits above
 * 2^53, so callers convert to number only after checking the range.
 */
/** Major and minor numbers of a Linux dev_t (the inverse of makedev), from a safe-integer rdev. */
export function splitDev(rdev: number): { major: number; minor: number } {
  const d = BigInt(rdev);
  return {
    major: Number(((d >> 8n) & 0xfffn) | ((d >> 32n) & 0xfffff000n)),
    minor: Number((d & 0xffn) | ((d >> 12n) & 0xffffff00n)),
  };
}

export function makedev(major: bigint, minor: bigint): bigint {
  return (
    ((major & 0xfffn) << 8n) |
    ((major & 0xfffff000n) << 32n) |
    (minor & 0xffn) |
    ((minor & 0xffffff00n) << 12n)
  );
}
