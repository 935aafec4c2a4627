// The delegator ("dtab playground"): explains a binding instead of performing it. Every
// alternative and union branch is expanded, errors are shown in place (docs/spec/dtab.md §4.3), and
// the answer is Linkerd's `/delegator.json` shape with its exact key order (§4.4).
import { lookup as dnsLookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { matchesPrefix, rewrite, showPrefix, type Dtab } from './dtab.ts';
import type { Dentry } from './parser.ts';
import { BindError, isBound, type Interpreter, type Name } from './bind.ts';
import { pathEquals, showPath, type Path } from './path.ts';
import { showPathTree, type Bound, type NameTree } from './tree.ts';

type D = Dentry | null; // the dentry that produced a node's path (null: the root / Dentry.nop)

/** Linkerd's DelegateTree: every node carries the path being resolved and the dentry behind it. */
export type DelegateNode =
  | { k: 'unbound'; name: Path; d: D } // only before expansion
  | { k: 'leaf'; path: Path; d: D; bound: Bound }
  | { k: 'delegate'; path: Path; d: D; child: DelegateNode }
  | { k: 'alt'; path: Path; d: D; children: DelegateNode[] }
  | { k: 'union'; path: Path; d: D; branches: Array<{ w: number; tree: DelegateNode }> }
  | { k: 'neg'; path: Path | null; d: D } // null: produced by an explicit '~' (shown as "~")
  | { k: 'fail'; path: Path; d: D }
  | { k: 'empty'; path: Path; d: D }
  | { k: 'exception'; path: Path; d: D; message: string };

const MAX = 100;

function fromTree(p: Path, e: D, t: NameTree<Name>): DelegateNode {
  switch (t.t) {
    case 'leaf': return isBound(t.v) ? { k: 'leaf', path: p, d: e, bound: t.v } : { k: 'unbound', name: t.v, d: e };
    case 'alt': return { k: 'alt', path: p, d: e, children: t.trees.map((c) => fromTree(p, e, c)) };
    case 'union': return { k: 'union', path: p, d: e, branches: t.branches.map((b) => ({ w: b.w, tree: fromTree(p, e, b.tree) })) };
    case 'fail': return { k: 'fail', path: p, d: e };
    case 'empty': return { k: 'empty', path: p, d: e };
    case 'neg': return { k: 'neg', path: null, d: e };
  }
}

function expand(it: Interpreter, dtab: Dtab, n: DelegateNode, depth: number): DelegateNode {
  switch (n.k) {
    case 'unbound': {
      if (depth > MAX) throw new BindError('max-depth', 'Max recursion level reached.');
      // Unlike routing, a single matching `~` dentry is shown as such; namers are not consulted.
      const ms: DelegateNode[] = [];
      for (let i = dtab.dentries.length - 1; i >= 0; i--) {
        const e = dtab.dentries[i];
        if (matchesPrefix(e.prefix, n.name)) ms.push(fromTree(n.name, e, rewrite(e.dst, n.name, e.prefix.length)));
      }
      let r: DelegateNode;
      if (ms.length === 0) {
        let t: NameTree<Name>;
        try { t = it.namerLookup(n.name); } catch (err) {
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

/** An error inside one alternative or branch is shown in its place, as an exception node. */
function guard(parent: { path: Path; d: D }, f: () => DelegateNode): DelegateNode {
  try { return f(); } catch (e) { return { k: 'exception', path: parent.path, d: parent.d, message: (e as Error).message }; }
}

const pathOf = (n: DelegateNode): Path | null => (n.k === 'unbound' ? n.name : n.path);
const same = (a: Path | null, b: Path | null) => a !== null && b !== null && pathEquals(a, b);

function simplify(n: DelegateNode): DelegateNode {
  switch (n.k) {
    case 'delegate': {
      // A Delegate whose child resolves the same path collapses into the child (parent dentry).
      const t = simplify(n.child);
      if (t.k !== 'neg' && t.k !== 'fail' && t.k !== 'empty' && same(pathOf(t), n.path)) return { ...t, d: n.d } as DelegateNode;
      return { ...n, child: t };
    }
    case 'alt': {
      if (n.children.length === 0) return { k: 'neg', path: n.path, d: n.d };
      if (n.children.length === 1) return simplify({ k: 'delegate', path: n.path, d: n.d, child: n.children[0] });
      const out: DelegateNode[] = [];
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

/**
 * The delegation tree of `path` under `dtab` (only that dtab: the caller prepends a base dtab if
 * it wants one), with the interpreter's namers. Synchronous; never throws for binding errors.
 */
export function explain(it: Interpreter, dtab: Dtab, path: Path): DelegateNode {
  try {
    return simplify(expand(it, dtab, { k: 'unbound', name: path, d: null }, 0));
  } catch (e) {
    return { k: 'exception', path, d: null, message: (e as Error).message };
  }
}

/**
 * Linkerd's "resolutions considered" lines (RichNoBrokersAvailableException), every leaf of the
 * delegation tree in order. Linkerd's exception line lacks its closing parenthesis; kept as is.
 */
export function resolutions(n: DelegateNode): string[] {
  switch (n.k) {
    case 'leaf': return [`${showPath(n.path)} (${n.bound.addr === null ? 'pending' : 'bound'})`];
    case 'exception': return [`${showPath(n.path)} (exception: ${n.message}`];
    case 'empty': return [`${showPath(n.path)} (empty)`];
    case 'fail': return [`${showPath(n.path)} (fail)`];
    case 'neg': return [`${n.path === null ? '/' : showPath(n.path)} (neg)`];
    case 'unbound': return [`${showPath(n.name)} (neg)`];
    case 'delegate': return resolutions(n.child);
    case 'alt': return n.children.flatMap(resolutions);
    case 'union': return n.branches.flatMap((b) => resolutions(b.tree));
  }
}

/** Produces Linkerd's `addr` JSON for a bound name. */
export type AddrResolver = (b: Bound) => Promise<unknown>;

/**
 * Linkerd's address JSON: `pending` when the namer has none yet (or none applies, e.g. a mesh
 * name), numeric hosts as written (127.1 -> 127.0.0.1), names through DNS (2 s, all addresses).
 */
export const defaultResolver: AddrResolver = async (b) => {
  if (b.addr === undefined || b.addr === null) return { type: 'pending' };
  const { host, port } = b.addr;
  const literal = inetAton(host) ?? (isIP(host) ? host : null);
  if (literal !== null) return { type: 'bound', addrs: [{ ip: literal, port, meta: {} }], meta: {} };
  let timer: NodeJS.Timeout | undefined;
  try {
    const all = await Promise.race([
      dnsLookup(host, { all: true }),
      new Promise<never>((_, rej) => { timer = setTimeout(() => rej(new Error(`DNS lookup of ${host} timed out`)), 2000); }),
    ]);
    if (all.length === 0) return { type: 'neg' };
    return { type: 'bound', addrs: all.map((a) => ({ ip: a.address, port, meta: {} })), meta: {} };
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOTFOUND' || code === 'ENODATA') return { type: 'neg' };
    return { type: 'failed', cause: (e as Error).message };
  } finally {
    clearTimeout(timer);
  }
};

/** Java/BSD inet_aton for dotted numeric hosts: 127.1 -> 127.0.0.1; null if not of that form. */
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

/** Key order is Linkerd's: type, path, dentry (omitted for none), then the type's own field. */
async function toJson(n: DelegateNode, resolve: AddrResolver): Promise<Record<string, unknown>> {
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

/** The `/delegator.json` body for `path` under `dtab` (only that dtab), with the interpreter's namers. */
export async function delegate(it: Interpreter, dtab: Dtab, path: Path, resolve: AddrResolver = defaultResolver): Promise<Record<string, unknown>> {
  return toJson(explain(it, dtab, path), resolve);
}
