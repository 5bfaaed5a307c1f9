/**
 * A tiny test-only pxar v1 encoder for synthetic archives (deep nesting, bad names, collisions).
 * It follows spec §5-§8 (BST goodbye order included) but skips everything tests do not need.
 */
import { PXAR } from '../../src/pxar/format.js';
import { pxarHash } from '../../src/pxar/siphash.js';

export type Node =
  | { kind: 'dir'; name: Buffer | string; children: Node[]; mode?: number }
  | { kind: 'file'; name: Buffer | string; data: Buffer | string; mode?: number }
  | { kind: 'symlink'; name: Buffer | string; target: string };

function item(htype: bigint, content: Buffer): Buffer {
  const h = Buffer.alloc(16);
  h.writeBigUInt64LE(htype, 0);
  h.writeBigUInt64LE(BigInt(16 + content.length), 8);
  return Buffer.concat([h, content]);
}

function entry(mode: number): Buffer {
  const c = Buffer.alloc(40);
  c.writeBigUInt64LE(BigInt(mode), 0);
  c.writeBigInt64LE(1700000000n, 24);
  return item(PXAR.ENTRY, c);
}

/** BST array permutation of spec §8.3: result[dest] = src. */
export function bstPermutation(n: number): number[] {
  const out = new Array<number>(n).fill(-1);
  if (n === 0) return out;
  const inner = (cnt: number, o: number, e: number, i: number): void => {
    const p = 1 << e;
    const t = p + (p >> 1) - 1;
    const m = cnt > t ? p - 1 : p - 1 - (t - cnt);
    out[i] = o + m;
    if (m > 0) inner(m, o, e - 1, 2 * i + 1);
    if (m + 1 < cnt) inner(cnt - m - 1, o + m + 1, e - 1, 2 * i + 2);
  };
  inner(n, 0, Math.floor(Math.log2(n)), 0);
  return out;
}

export function buildV1(root: Node & { kind: 'dir' }, hashOf: (name: Buffer) => bigint = pxarHash): Buffer {
  const out: Buffer[] = [];
  let pos = 0;
  const push = (b: Buffer): void => {
    out.push(b);
    pos += b.length;
  };
  const nameOf = (n: Node): Buffer => (typeof n.name === 'string' ? Buffer.from(n.name) : n.name);
  // Explicit stack so very deep trees do not overflow the JS stack.
  type Frame = { node: Node & { kind: 'dir' }; entryStart: number; next: number; recs: { hash: bigint; fn: number; size: number }[]; fnPos: number };
  const open = (node: Node & { kind: 'dir' }, fnPos: number): Frame => {
    const f = { node, entryStart: pos, next: 0, recs: [], fnPos };
    push(entry(node.mode ?? 0o40755));
    return f;
  };
  const stack: Frame[] = [open(root, -1)];
  stack[0]!.entryStart = 0;
  while (stack.length > 0) {
    const f = stack[stack.length - 1]!;
    if (f.next < f.node.children.length) {
      const child = f.node.children[f.next++]!;
      const fn = pos;
      const name = nameOf(child);
      push(item(PXAR.FILENAME, Buffer.concat([name, Buffer.from([0])])));
      if (child.kind === 'dir') {
        stack.push(open(child, fn));
        continue;
      }
      if (child.kind === 'file') {
        push(entry(child.mode ?? 0o100644));
        push(item(PXAR.PAYLOAD, Buffer.from(child.data)));
      } else {
        push(entry(0o120777));
        push(item(PXAR.SYMLINK, Buffer.concat([Buffer.from(child.target), Buffer.from([0])])));
      }
      f.recs.push({ hash: hashOf(name), fn, size: pos - fn });
      continue;
    }
    // Close the directory: GOODBYE with BST-ordered records and the tail.
    const gb = pos;
    const sorted = [...f.recs].sort((a, b) => (a.hash < b.hash ? -1 : a.hash > b.hash ? 1 : 0));
    const perm = bstPermutation(sorted.length);
    const table = Buffer.alloc(24 * (sorted.length + 1));
    perm.forEach((src, dest) => {
      const r = sorted[src]!;
      table.writeBigUInt64LE(r.hash, dest * 24);
      table.writeBigUInt64LE(BigInt(gb - r.fn), dest * 24 + 8);
      table.writeBigUInt64LE(BigInt(r.size), dest * 24 + 16);
    });
    const t = sorted.length * 24;
    table.writeBigUInt64LE(PXAR.GOODBYE_TAIL_MARKER, t);
    table.writeBigUInt64LE(BigInt(gb - f.entryStart), t + 8);
    table.writeBigUInt64LE(BigInt(16 + table.length), t + 16);
    push(item(PXAR.GOODBYE, table));
    stack.pop();
    const parent = stack[stack.length - 1];
    if (parent !== undefined) parent.recs.push({ hash: hashOf(nameOf(f.node)), fn: f.fnPos, size: pos - f.fnPos });
  }
  return Buffer.concat(out);
}
