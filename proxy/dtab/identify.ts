// Identifiers: an HTTP request -> a logical name (docs/spec/dtab.md §3.1, identify-vectors.json).
import { parsePath, DtabParseError } from './parser.ts';
import { latin1Elem as latin1, type Path } from './path.ts';

export type IdentifierConfig =
  | { kind: 'io.l5d.header.token'; header?: string }
  | { kind: 'io.l5d.methodAndHost'; httpUriInDst?: boolean }
  | { kind: 'io.l5d.path'; segments?: number; consume?: boolean }
  | { kind: 'io.l5d.header'; header?: string }
  | { kind: 'io.l5d.static'; path: string };

export interface IdentifyRequest {
  method: string;
  uri: string;
  version: string;                     // 'HTTP/1.1' | 'HTTP/1.0'
  header(lowerName: string): string | undefined;
}

export type Identified =
  | { ok: true; name: Path; uri?: string }     // uri: the request URI after a consuming identifier
  | { ok: false; error: 'unidentified' | 'identification'; reason: string };

export type Identifier = (r: IdentifyRequest) => Identified;

export function makeIdentifier(cfg: IdentifierConfig, dstPrefix: Path): Identifier {
  switch (cfg.kind) {
    case 'io.l5d.header.token': {
      const name = cfg.header ?? 'Host';
      const lower = name.toLowerCase();
      return (r) => {
        const v = r.header(lower);
        if (!v) return { ok: false, error: 'unidentified', reason: `${name} header is absent` };
        return { ok: true, name: [...dstPrefix, latin1(v)] };
      };
    }
    case 'io.l5d.header': {
      const name = cfg.header ?? 'l5d-name';
      const lower = name.toLowerCase();
      return (r) => {
        const v = r.header(lower);
        if (!v) return { ok: false, error: 'unidentified', reason: `${name} header is absent` };
        try { return { ok: true, name: [...dstPrefix, ...parsePath(v)] }; } catch (e) {
          if (e instanceof DtabParseError) return { ok: false, error: 'identification', reason: e.message };
          throw e;
        }
      };
    }
    case 'io.l5d.methodAndHost':
      return (r) => {
        const path = r.uri.split('?')[0];
        let uriElems: Path = [];
        if (cfg.httpUriInDst && path !== '/' && path !== '') {
          try { uriElems = parsePath(path); } catch (e) {
            if (e instanceof DtabParseError) return { ok: false, error: 'identification', reason: e.message };
            throw e;
          }
        }
        if (r.version === 'HTTP/1.1') {
          const host = r.header('host');
          if (!host) return { ok: false, error: 'unidentified', reason: 'HTTP/1.1 request missing hostname' };
          return { ok: true, name: [...dstPrefix, '1.1', r.method, latin1(host.toLowerCase()), ...uriElems] };
        }
        if (r.version === 'HTTP/1.0') return { ok: true, name: [...dstPrefix, '1.0', r.method, ...uriElems] };
        return { ok: false, error: 'unidentified', reason: `Unknown HTTP version ${r.version}` };
      };
    case 'io.l5d.path': {
      const n = cfg.segments ?? 1;
      return (r) => {
        const q = r.uri.indexOf('?');
        const path = q < 0 ? r.uri : r.uri.slice(0, q);
        const query = q < 0 ? '' : r.uri.slice(q);
        const segs = path.split('/').filter((s) => s !== '');
        if (segs.length < n) return { ok: false, error: 'unidentified', reason: 'not enough segments in path' };
        const name = [...dstPrefix, ...segs.slice(0, n).map(latin1)];
        if (!cfg.consume) return { ok: true, name };
        // Drop the first n segments, keeping a trailing slash and the query.
        let i = 0, seen = 0;
        while (seen < n) { i = path.indexOf('/', i) + 1; while (path[i] === '/') i++; const j = path.indexOf('/', i); i = j < 0 ? path.length : j; seen++; }
        const rest = path.slice(i) || '/';
        return { ok: true, name, uri: rest + query };
      };
    }
    case 'io.l5d.static': {
      const p = parsePath(cfg.path);
      return () => ({ ok: true, name: p });
    }
  }
}
