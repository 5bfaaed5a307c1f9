/**
 * A datastore whose fixed-name directories (`ns`, `vm`, ...) are symbolic links: listing must not
 * follow them out of the datastore (found by the datastore-paths fuzz target: `ns -> ../..` made
 * the namespace walk list the whole parent tree, slowly).
 */
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { dir as tmpDir } from 'tmp-promise';
import { describe, expect, it } from 'vitest';
import { FormatError } from '../../src/errors.js';
import { LocalDatastore } from '../../src/store/local-datastore.js';

describe('symlinked directories inside a datastore', () => {
  it('are not followed: no namespaces, groups or snapshots from outside', async () => {
    const tmp = await tmpDir({ unsafeCleanup: true, prefix: 'pbsfs-links-' });
    try {
      // Outside the datastore: something that looks like namespaces and groups.
      const outside = join(tmp.path, 'outside');
      await mkdir(join(outside, 'ns', 'evil', 'vm', '666', '2024-06-01T10:00:00Z'), { recursive: true });
      await mkdir(join(outside, 'vm', '666', '2024-06-01T10:00:00Z'), { recursive: true });
      await writeFile(join(outside, 'vm', '666', '2024-06-01T10:00:00Z', 'index.json.blob'), 'x');
      const root = join(tmp.path, 'store');
      await mkdir(join(root, '.chunks'), { recursive: true });
      await symlink(join(outside, 'ns'), join(root, 'ns'));
      await symlink(join(outside, 'vm'), join(root, 'vm'));
      await mkdir(join(root, 'host'));
      await symlink(join(outside, 'vm', '666'), join(root, 'host', 'linked'));
      const ds = await LocalDatastore.open(root);
      expect(await ds.listNamespaces()).toEqual([]);
      expect(await ds.listGroups()).toEqual([]);
      expect(await ds.listSnapshots()).toEqual([]);
      // A group named on the command line through the link: nothing (as for a missing group).
      expect(await ds.listSnapshots([], { type: 'vm', id: '666' })).toEqual([]);
      const ref = { type: 'vm', id: '666', time: Date.parse('2024-06-01T10:00:00Z') / 1000 } as const;
      expect(await ds.hasSnapshot([], ref)).toBe(false);
      const e = await ds.readSnapshotFile([], ref, 'index.json.blob', 4096).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(FormatError);
      expect((e as Error).message).toMatch(/^vm\/666\/2024-06-01T10:00:00Z\/index\.json\.blob: .*symbolic link/);
    } finally {
      await tmp.cleanup();
    }
  });
});
