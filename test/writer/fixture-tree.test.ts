/**
 * The vector fixture tree, materialised on disk (restored from archive-v1.pxar with our restore
 * library, as root) and archived again by the filesystem walk: every entry must come back as the
 * upstream listing describes it, and with the python3 attribute helper (listxattr order, chattr
 * flags) on a filesystem that keeps the fixture's flags, the archive is archive-v1.pxar byte for
 * byte. Without it, xattrs come in getfattr's sorted order and flags are 0.
 */
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { withDir } from 'tmp-promise';
import { createHash } from 'node:crypto';
import { BufferReadAt, FileReadAt } from '../../src/io/read-at.js';
import { PxarSequentialDecoder } from '../../src/pxar/sequential.js';
import { restorePxar } from '../../src/restore/restore.js';
import { PxarEncoder, type ByteSink } from '../../src/writer/pxar-encoder.js';
import { TreeWalker } from '../../src/writer/fs-walk.js';
import { haveGetfattr, havePython, readTreeAttrs } from '../../src/writer/fs-attrs.js';
import { pxarDir, vectorsDir } from '../helpers/paths.js';
import { CatalogWriter } from '../../src/catalog/catalog-writer.js';

class MemSink implements ByteSink {
  parts: Buffer[] = [];
  write(d: Uint8Array): void {
    this.parts.push(Buffer.from(d));
  }
}

interface L {
  flags?: number;
  kind: string; path_hex: string; mode_dec?: number; uid?: number; gid?: number; mtime?: { secs: number; nanos: number };
  size?: number; sha256?: string; symlink_target?: string; hardlink_target?: string; device_major?: number; device_minor?: number;
  xattrs?: { name: string; value_hex: string }[]; fcaps_hex?: string;
}

describe('the vector fixture tree, restored and archived again', () => {
  it('gives the upstream listing back (all kinds, owners, nanosecond mtimes, hardlinks, devices, attrs)', async () => {
    if (process.getuid?.() !== 0 || !haveGetfattr()) {
      expect(process.getuid?.() === 0 && haveGetfattr()).toBe(false);
      return;
    }
    const listing = (JSON.parse(readFileSync(join(pxarDir, 'archive-v1.listing.json'), 'utf8')) as L[]).filter((e) => e.kind !== 'version');
    await withDir(
      async ({ path: tmp }) => {
        const tree = join(tmp, 't');
        const src = await FileReadAt.open(join(pxarDir, 'archive-v1.pxar'));
        try {
          const summary = await restorePxar(src, undefined, tree, { devices: true });
          expect(summary.skipped).toBe(0);
        } finally {
          await src.close();
        }
        const catalog = new CatalogWriter();
        const walker = new TreeWalker(tree, { catalog });
        const out = new MemSink();
        catalog.startDirectory('root.pxar.didx');
        walker.run(new PxarEncoder(out, walker.rootMeta()));
        catalog.endDirectory();
        const catalogBytes = catalog.finish();
        // the catalog of the same walk equals upstream's catalog of the fixture, byte for byte
        const expected = JSON.parse(readFileSync(join(vectorsDir, 'datastore', 'expected.json'), 'utf8')) as {
          snapshots: { files: Record<string, { catalog_plain_copy?: string }> }[];
        };
        const copies = expected.snapshots.flatMap((sn) => Object.values(sn.files).map((f) => f.catalog_plain_copy).filter((c): c is string => c !== undefined));
        expect(copies.length).toBeGreaterThan(0);
        for (const c of copies) expect(catalogBytes.equals(readFileSync(join(vectorsDir, 'datastore', c)))).toBe(true);
        const archive = Buffer.concat(out.parts);
        const dec = await PxarSequentialDecoder.open(new BufferReadAt('rewalked.pxar', archive));
        const got: L[] = [];
        for await (const e of dec.entries()) {
          const path = e.path.length <= 1 ? e.path : e.path;
          const x: L = { kind: e.kind, path_hex: path.toString('hex') };
          const m = e.metadata;
          if (m) {
            x.mode_dec = m.stat.mode;
            x.uid = m.stat.uid;
            x.gid = m.stat.gid;
            x.mtime = { secs: m.stat.mtimeSecs, nanos: m.stat.mtimeNanos };
            if (m.xattrs.length) x.xattrs = m.xattrs.map((a) => ({ name: a.name.toString(), value_hex: a.value.toString('hex') }));
            if (m.fcaps) x.fcaps_hex = m.fcaps.toString('hex');
          }
          if (e.kind === 'file') {
            const parts: Buffer[] = [];
            for await (const b of dec.stream(e)) parts.push(b);
            x.size = e.size;
            x.sha256 = createHash('sha256').update(Buffer.concat(parts)).digest('hex');
          }
          if (e.symlinkTarget) x.symlink_target = e.symlinkTarget.toString('hex');
          if (e.hardlink) x.hardlink_target = e.hardlink.target.toString('hex');
          if (e.device) (x.device_major = e.device.major), (x.device_minor = e.device.minor);
          got.push(x);
        }
        expect(got.map((g) => `${g.kind} ${g.path_hex}`)).toEqual(listing.map((l) => `${l.kind} ${l.path_hex}`));
        // Byte for byte when the helper can read flags and the filesystem kept them.
        const attrs = havePython() ? readTreeAttrs(tree, undefined, 'python') : undefined;
        // (the filesystem must also list xattrs in the order they were set, as ext4 does for a few)
        const keyOf = (l: L) => Buffer.from(l.path_hex, 'hex').subarray(1).toString('latin1');
        const flagsKept =
          attrs !== undefined &&
          listing.every((l) => (l.kind !== 'file' && l.kind !== 'directory') || (attrs.get(keyOf(l))?.flags ?? 0) === (l.flags ?? 0)) &&
          listing.every(
            (l) =>
              !l.xattrs ||
              JSON.stringify((attrs.get(keyOf(l))?.xattrs ?? []).map((x) => Buffer.from(x.name).toString())) === JSON.stringify(l.xattrs.map((x) => x.name)),
          );
        if (flagsKept) expect(archive.equals(readFileSync(join(pxarDir, 'archive-v1.pxar')))).toBe(true);
        const stripNul = (s: string) => Buffer.from(s.endsWith('\0') ? s.slice(0, -1) : s, 'utf8').toString('hex');
        listing.forEach((l, i) => {
          const g = got[i]!;
          const what = Buffer.from(l.path_hex, 'hex').toString();
          if (l.kind === 'hardlink') {
            expect(g.hardlink_target, what).toBe(stripNul(l.hardlink_target!));
            return;
          }
          // the restored root is the temp directory itself: its owner/mode/mtime are restored too
          expect([g.mode_dec, g.uid, g.gid, g.mtime], what).toEqual([l.mode_dec, l.uid, l.gid, l.mtime]);
          if (l.kind === 'file') expect([g.size, g.sha256], what).toEqual([l.size, l.sha256]);
          if (l.symlink_target !== undefined) expect(g.symlink_target, what).toBe(stripNul(l.symlink_target));
          if (l.device_major !== undefined) expect([g.device_major, g.device_minor], what).toEqual([l.device_major, l.device_minor]);
          expect(g.fcaps_hex, what).toBe(l.fcaps_hex);
          const sorted = (xs?: { name: string; value_hex: string }[]) => xs?.map((a) => `${a.name}=${a.value_hex}`).sort();
          expect(sorted(g.xattrs), what).toEqual(sorted(l.xattrs));
        });
      },
      { unsafeCleanup: true },
    );
  });
});
