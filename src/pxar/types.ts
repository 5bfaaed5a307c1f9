/** Decoded pxar entries and metadata, shared by the random-access and the sequential decoders. */

export type PxarKind = 'directory' | 'file' | 'symlink' | 'hardlink' | 'chardev' | 'blockdev' | 'fifo' | 'socket';

/** ENTRY (stat v2) or ENTRY_V1, normalised: mtime as signed seconds + nanoseconds. */
export interface PxarStat {
  /** Full st_mode (type and permission bits). */
  mode: number;
  /** Per-file attribute flags (§13.2). Bits above 2^53 would be lost; none are defined there. */
  flags: number;
  uid: number;
  gid: number;
  /** Floor seconds since the epoch (negative before 1970). */
  mtimeSecs: number;
  /** 0..999999999, always added to mtimeSecs. */
  mtimeNanos: number;
}

export interface PxarXattr {
  name: Buffer;
  value: Buffer;
}

/** One ACL_USER / ACL_GROUP / ACL_DEFAULT_USER / ACL_DEFAULT_GROUP item. */
export interface PxarAclEntry {
  /** uid or gid (u64 on disk; Linux uses 32 bits). */
  id: number;
  /** READ=4, WRITE=2, EXECUTE=1 (u64 on disk). */
  permissions: number;
}

/** ACL_DEFAULT: the default ACL's owner, group, other and mask permissions (NO_MASK = not set). */
export interface PxarAclDefault {
  userObj: number;
  groupObj: number;
  other: number;
  mask: number;
}

export interface PxarAcl {
  users: PxarAclEntry[];
  groups: PxarAclEntry[];
  /** The real owning-group permissions when the access ACL has a mask (then stat group bits = mask). */
  groupObj: number | undefined;
  default: PxarAclDefault | undefined;
  defaultUsers: PxarAclEntry[];
  defaultGroups: PxarAclEntry[];
}

export interface PxarMetadata {
  stat: PxarStat;
  xattrs: PxarXattr[];
  acl: PxarAcl;
  /** Raw `security.capability` value. */
  fcaps: Buffer | undefined;
  quotaProjectId: bigint | undefined;
}

export interface PxarHardlink {
  /** Distance back from this entry's FILENAME to the target's FILENAME. */
  offset: number;
  /** Root-relative target path (data only: never join it into a host path unchecked). */
  target: Buffer;
  /** Archive position of the target's FILENAME item. */
  targetFilenameOffset: number;
}

export interface PxarEntry {
  kind: PxarKind;
  /** Raw file name ('' for the root). */
  name: Buffer;
  /** Position of the FILENAME item (-1 for the root). */
  filenameOffset: number;
  /** Position of the ENTRY (or HARDLINK) item. */
  entryOffset: number;
  /**
   * Directories: the end of the directory's GOODBYE item (what openDirAtEnd takes). Other kinds:
   * the end of the entry's last item (for v1 files, the end of the inline data).
   */
  end: number;
  /** Absent only for hardlinks (they carry no metadata of their own). */
  metadata: PxarMetadata | undefined;
  /** Regular files: content length. Symlinks: target length. Otherwise 0. */
  size: number;
  /** v1 regular files: archive position of the first content byte. */
  contentOffset: number | undefined;
  /** v2 regular files: payload-stream position of the PAYLOAD header (PAYLOAD_REF.offset). */
  payloadOffset: number | undefined;
  symlinkTarget: Buffer | undefined;
  device: { major: number; minor: number } | undefined;
  hardlink: PxarHardlink | undefined;
}

export function emptyAcl(): PxarAcl {
  return { users: [], groups: [], groupObj: undefined, default: undefined, defaultUsers: [], defaultGroups: [] };
}

export function aclIsEmpty(a: PxarAcl): boolean {
  return (
    a.users.length === 0 &&
    a.groups.length === 0 &&
    a.groupObj === undefined &&
    a.default === undefined &&
    a.defaultUsers.length === 0 &&
    a.defaultGroups.length === 0
  );
}
