// The delegator ("dtab playground"): explains a binding by expanding every alternative and union
// branch, errors shown in place (spec/dtab.md §4.3-4.4), in Linkerd's JSON shape.
import { lookup as dnsLookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { Dtab, matchPrefix, showPrefix } from './dtab.ts';
import type { Dentry } from './parser.ts';
import { BindError, isBound, type Interpreter, type Name } from './bind.ts';
import { showPath, showPathTree, type Bound, type NameTree, type Path } from './tree.ts';

type D = Dentry | null;
type Node =
  | { k: 'unbound'; name: Path; d: D }
  | { k: 'leaf'; path: Path; d: D; bound: Bound }
  | { k: 'delegate'; path: Path; d: D; child: Node }
  | { k: 'alt'; path: Path; d: D; children: Node[] }
  | { k: 'union'; path: Path; d: D; branches: Array<{ w: number; tree: Node }> }
  | { k: 'neg'; path: Path | null; d: D }   // null = produced by an explicit '~'
  | { k: 'fail'; path: Path; d: D }
  | { k: 'empty'; path: Path; d: D }
  | { k: 'exception'; path: Path; d: D; message: string };

const MAX = 100;

function fromTree(p: Path, e: D, t: NameTree<Name>): Node {
  switch (t.t) {
    case 'leaf': return isBound(t.v) ? { k: 'leaf', path: p, d: e, bound: t.v } : { k: 'unbound', name: t.v, d: e };
    case 'alt': return { k: 'alt', path: p, d: e, children: t.trees.map((c) => fromTree(p, e, c)) };
    case 'union': return { k: 'union', path: p, d: e, branches: t.branches.map((b) => ({ w: b.w, tree: fromTree(p, e, b.tree) })) };
    case 'fail': return { k: 'fail', path: p, d: e };
    case 'empty': return { k: 'empty', path: p, d: e };
    case 'neg': return { k: 'neg', path: null, d: e };
  }
}

function expand(it: Interpreter, dtab: Dtab, n: Node, depth: number): Node {
  switch (n.k) {
    case 'unbound': {
      if (depth > MAX) throw new BindError('max-depth', 'Max recursion level reached.');
      const ms: Node[] = [];
      for (let i = dtab.dentries.length - 1; i >= 0; i--) {
        const e = dtab.dentries[i];
        const residual = matchPrefix(e.prefix, n.name);
        if (residual === null) continue;
        const rewritten = residual.length === 0 ? e.dst : mapLeaves(e.dst, residual);
        ms.push(fromTree(n.name, e, rewritten));
      }
      let r: Node;
      if (ms.length === 0) {
        let t: NameTree<Name>;
        try { t = it.lookup(Dtab.empty, n.name); } catch (err) {
          return { k: 'exception', path: n.name, d: n.d, message: (err as Error).message };
        }
        r = t.t === 'neg' ? { k: 'neg', path: n.name, d: n.d } : fromTree(n.name, n.d, t);
      } else if (ms.length === 1) r = { k: 'delegate', path: n.name, d: n.d, child: ms[0] };
      else r = { k: 'alt', path: n.name, d: n.d, children: ms };
      return expand(it, dtab, r, depth + 1);
    }
    case 'delegate': return { ...n, child: expand(it, dtab, n.child, depth) };
    case 'alt':
      if (n.children.length === 0) return { k: 'neg', path: n.path, d: n.d };
      if (n.children.length === 1) return { k: 'delegate', path: n.path, d: n.d, child: expand(it, dtab, n.children[0], depth) };
      return { ...n, children: n.children.map((c) => guard(n, () => expand(it, dtab, c, depth))) };
    case 'union':
      if (n.branches.length === 0) return { k: 'neg', path: n.path, d: n.d };
      return { ...n, branches: n.branches.map((b) => ({ w: b.w, tree: guard(n, () => expand(it, dtab, b.tree, depth)) })) };
    default: return n;
  }
}

function guard(parent: { path: Path; d: D }, f: () => Node): Node {
  try { return f(); } catch (e) { return { k: 'exception', path: parent.path, d: parent.d, message: (e as Error).message }; }
}

function mapLeaves(t: NameTree<Path>, residual: Path): NameTree<Path> {
  switch (t.t) {
    case 'leaf': return { t: 'leaf', v: [...t.v, ...residual] };
    case 'alt': return { t: 'alt', trees: t.trees.map((c) => mapLeaves(c, residual)) };
    case 'union': return { t: 'union', branches: t.branches.map((b) => ({ w: b.w, tree: mapLeaves(b.tree, residual) })) };
    default: return t;
  }
}

const pathOf = (n: Node): Path | null => (n.k === 'unbound' ? n.name : n.path);
const same = (a: Path | null, b: Path | null) => a !== null && b !== null && a.length === b.length && a.every((x, i) => x === b[i]);

function simplify(n: Node): Node {
  switch (n.k) {
    case 'delegate': {
      const t = simplify(n.child);
      if (t.k !== 'neg' && t.k !== 'fail' && t.k !== 'empty' && same(pathOf(t), n.path)) return { ...t, d: n.d } as Node;
      return { ...n, child: t };
    }
    case 'alt': {
      if (n.children.length === 0) return { k: 'neg', path: n.path, d: n.d };
      if (n.children.length === 1) return simplify({ k: 'delegate', path: n.path, d: n.d, child: n.children[0] });
      const out: Node[] = [];
      for (const c of n.children.map(simplify)) {
        if (c.k === 'alt' && same(c.path, n.path)) out.push(...c.children); else out.push(c);
      }
      return { ...n, children: out };
    }
    case 'union':
      if (n.branches.length === 0) return { k: 'neg', path: n.path, d: n.d };
      if (n.branches.length === 1) return simplify({ k: 'delegate', path: n.path, d: n.d, child: n.branches[0].tree });
      return { ...n, branches: n.branches.map((b) => ({ w: b.w, tree: simplify(b.tree) })) };
    default: return n;
  }
}

export type AddrResolver = (b: Bound) => Promise<unknown>;

/** Linkerd's address JSON: numeric hosts as written (127.1 -> 127.0.0.1), names through DNS (2 s). */
export const defaultResolver: AddrResolver = async (b) => {
  if (b.addr === undefined || b.addr === null) return { type: 'pending' };
  const { host, port } = b.addr;
  let ip = inetAton(host) ?? (isIP(host) ? host : null);
  if (ip === null) {
    try {
      ip = (await Promise.race([dnsLookup(host), new Promise<never>((_, rej) => setTimeout(() => rej(new Error('timed out')), 2000))])).address;
    } catch (e) {
      return { type: 'failed', cause: (e as Error).message };
    }
  }
  return { type: 'bound', addrs: [{ ip, port, meta: {} }], meta: {} };
};

/** Java/BSD inet_aton for dotted numeric hosts: 127.1 -> 127.0.0.1. */
export function inetAton(h: string): string | null {
  if (!/^\d+(\.\d+){0,3}$/.test(h)) return null;
  const parts = h.split('.').map(Number);
  const last = parts.pop()!;
  const lastBytes = 4 - parts.length;
  if (parts.some((p) => p > 255) || last >= 2 ** (8 * lastBytes)) return null;
  const bytes = [...parts];
  for (let i = lastBytes - 1; i >= 0; i--) bytes.push(Math.floor(last / 2 ** (8 * i)) % 256);
  return bytes.join('.');
}

function dentryJson(d: Dentry): { prefix: string; dst: string } {
  return { prefix: showPrefix(d.prefix), dst: showPathTree(d.dst) };
}

async function toJson(n: Node, resolve: AddrResolver): Promise<Record<string, unknown>> {
  const head = (type: string, path: string): Record<string, unknown> => {
    const o: Record<string, unknown> = { type, path };
    if (n.d) o.dentry = dentryJson(n.d);
    return o;
  };
  switch (n.k) {
    case 'unbound': return head('neg', showPath(n.name)); // not reached after expand
    case 'delegate': { const o = head('delegate', showPath(n.path)); o.delegate = await toJson(n.child, resolve); return o; }
    case 'alt': { const o = head('alt', showPath(n.path)); o.alt = await Promise.all(n.children.map((c) => toJson(c, resolve))); return o; }
    case 'union': {
      const o = head('union', showPath(n.path));
      o.union = await Promise.all(n.branches.map(async (b) => ({ weight: b.w, tree: await toJson(b.tree, resolve) })));
      return o;
    }
    case 'leaf': {
      const o = head('leaf', showPath(n.path));
      o.bound = { addr: await resolve(n.bound), id: showPath(n.bound.id), path: showPath(n.bound.residual) };
      return o;
    }
    case 'neg': return head('neg', n.path === null ? '~' : showPath(n.path));
    case 'fail': return head('fail', n.path[0] === '$' && n.path[1] === 'fail' ? showPath(n.path) : '!');
    case 'empty': return head('empty', showPath(n.path));
    case 'exception': { const o = head('exception', showPath(n.path)); o.message = n.message; return o; }
  }
}

/** The `/delegator.json` body for `path` under `dtab`, using the interpreter's namers. */
export async function delegate(it: Interpreter, dtab: Dtab, path: Path, resolve: AddrResolver = defaultResolver): Promise<Record<string, unknown>> {
  let tree: Node;
  try {
    tree = simplify(expand(it, dtab, { k: 'unbound', name: path, d: null }, 0));
  } catch (e) {
    tree = { k: 'exception', path, d: null, message: (e as Error).message };
  }
  return toJson(tree, resolve);
}

