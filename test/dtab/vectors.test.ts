// Every vector of test/dtab/vectors/dtab-vectors.json and identify-vectors.json.
import { describe, expect, it } from 'vitest';
import {
  BindError, Dtab, DtabParseError, Interpreter, delegate, encodeBound, encodeError, evalTree, makeIdentifier,
  parseDentry, parseDtabHeaders, parseNameTree, parsePath, showDentry, showPath, showPathTree, simplify,
} from '../../proxy/dtab/index.ts';
import { fixtures, loadVectors } from './fixtures.ts';

const vectors = loadVectors('dtab-vectors.json');

function parseOr<T>(f: () => T, v: any): T | string {
  try { return f(); } catch (e) {
    if (!(e instanceof DtabParseError)) throw e;
    if (v.message) expect(e.message).toBe(v.message);
    return 'error: parse';
  }
}

describe('dtab-vectors.json', () => {
  it('has the 120 vectors the spec describes', () => { expect(vectors.length).toBe(120); });
  vectors.forEach((v, i) => {
    const text = v.op === 'parse-path' ? v.path : v.op === 'parse-tree' || v.op === 'eval' ? v.tree : v.dtab;
    const input = JSON.stringify(text ?? '').slice(0, 80) + (v.path && v.op !== 'parse-path' ? ` ${v.path}` : '');
    it(`${v.op} #${i} ${input}`, async () => {
      const f = fixtures(v);
      switch (v.op) {
        case 'parse-dtab': expect(parseOr(() => Dtab.parse(v.dtab ?? '').show(), v)).toBe(v.expect); break;
        case 'parse-dentry': expect(parseOr(() => showDentry(parseDentry(v.dtab)), v)).toBe(v.expect); break;
        case 'parse-path': expect(parseOr(() => showPath(parsePath(v.path ?? '')), v)).toBe(v.expect); break;
        case 'parse-tree': expect(parseOr(() => showPathTree(parseNameTree(v.tree)), v)).toBe(v.expect); break;
        case 'lookup': expect(showPathTree(Dtab.parse(v.dtab).lookup(parsePath(v.path)))).toBe(v.expect); break;
        case 'eval': {
          const t = parseNameTree(v.tree);
          const r = evalTree(t, showPath);
          expect(r === null ? 'none' : [...r].map(showPath).sort()).toEqual(v.expect);
          expect(showPathTree(simplify(t))).toBe(v.simplified);
          break;
        }
        case 'bind': {
          const interp = new Interpreter(Dtab.parse(v.dtab), f.namers, { classpath: f.classpath, maxDepth: v.maxDepth });
          const once = () => { try { return encodeBound(interp.bind(parsePath(v.path))); } catch (e) { if (e instanceof BindError) return encodeError(e); throw e; } };
          expect(once()).toEqual(v.expect);
          expect(once()).toEqual(v.expect); // the cached answer is the same, errors included
          expect(interp.cacheEntries).toBe(1);
          break;
        }
        case 'request': {
          const interp = new Interpreter(Dtab.parse(v.dtab), f.namers, { classpath: f.classpath });
          const named = (n: string) => (v.clearContext ? [] : v.headers.filter((h: string[]) => h[0].toLowerCase() === n).map((h: string[]) => h[1]));
          const r = parseDtabHeaders(named('l5d-ctx-dtab'), named('l5d-dtab'));
          if (!r.ok) {
            expect('error: 400').toBe(v.expect);
            if (v.message) expect(r.message).toBe(v.message);
            break;
          }
          expect(encodeBound(interp.bind(parsePath(v.path), r.local))).toEqual(v.expect);
          expect(r.local.show()).toBe(v.localDtab);
          expect(r.forwardCtx).toBe(v.forwardedCtxDtab);
          break;
        }
        case 'delegate': {
          const interp = new Interpreter(Dtab.empty, f.namers, { classpath: f.classpath });
          const body = await delegate(interp, Dtab.parse(v.dtab), parsePath(v.path));
          // Key order is part of Linkerd's shape: compare the serialised form.
          expect(JSON.stringify(body)).toBe(JSON.stringify(v.expect));
          break;
        }
        default: throw new Error(`unknown op ${v.op}`);
      }
    });
  });
});

describe('identify-vectors.json', () => {
  const iv = loadVectors('identify-vectors.json');
  iv.forEach((v, i) => {
    it(`identify #${i} ${v.identifier.kind} ${v.request.version} ${v.request.method} ${v.request.uri} ${JSON.stringify(v.request.headers)}`, () => {
      const id = makeIdentifier(v.identifier, parsePath(v.dstPrefix));
      const headers = new Map<string, string>(v.request.headers.map((h: string[]) => [h[0].toLowerCase(), h[1]]));
      const r = id({ method: v.request.method, uri: v.request.uri, version: v.request.version, header: (n) => headers.get(n) });
      if (r.ok) {
        expect(showPath(r.name)).toBe(v.expect);
        if (v.uriAfter !== undefined) expect(r.uri ?? v.request.uri).toBe(v.uriAfter);
      } else {
        expect(r.error === 'unidentified' ? 'unidentified' : 'error: identification').toBe(v.expect);
        if (v.reason) expect(r.reason).toBe(v.reason);
      }
    });
  });
});
