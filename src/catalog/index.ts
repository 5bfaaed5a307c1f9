/** `.pcat1` catalogs: reader, writer and their variable-length integers (spec 10). */
export {
  CATALOG_MAGIC,
  CatalogReader,
  MAX_CATALOG_DEPTH,
  MAX_CATALOG_NAME_LEN,
  type CatalogDirEntry,
  type CatalogEntry,
  type CatalogEntryType,
  type CatalogFileEntry,
  type CatalogListItem,
  type CatalogSpecialEntry,
  type CatalogSpecialType,
} from './catalog-reader.js';
export { CatalogWriter, type CatalogWriterOptions } from './catalog-writer.js';
export { decodeVi64, decodeVu64, encodeVi64, encodeVu64 } from './varint.js';
