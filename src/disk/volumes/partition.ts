/** A partition as a table describes it, before its content is looked at. */
export interface PartitionRecord {
  /** Linux's partition number: GPT entry index + 1; MBR slot 1-4, logical partitions from 5. */
  number: number;
  /** Byte offset in the image. */
  start: number;
  /** Bytes as the table gives them (may reach past the image: see `truncatedBy`). */
  size: number;
  typeId: string;
  typeName: string | undefined;
  partName?: string;
  partUuid?: string;
  mbrRole?: 'primary' | 'extended' | 'logical';
  /** Bytes of the partition past the end of the image (a truncated image or a bad table). */
  truncatedBy: number;
}

/** Clips a table's [start, start + size) to the image, noting how much lies past its end. */
export function clipToImage(start: number, size: number, imageSize: number): { size: number; truncatedBy: number } {
  if (start >= imageSize) return { size: 0, truncatedBy: size };
  const end = Math.min(imageSize, start + size);
  return { size: end - start, truncatedBy: start + size - end };
}
