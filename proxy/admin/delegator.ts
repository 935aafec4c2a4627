// Admin `/delegator.json` (GET with query, POST with JSON) and `/delegator` (the playground page),
// as Linkerd 1's admin served them (docs/spec/dtab.md §4): only the dtab given is used; the page
// fills in this proxy's base dtab. Namers are the running snapshot's (meshlet's /#/meshlet).
import type { ServerRequest, ServerResponse } from '../engine/server.ts';
import { Dtab, DtabParseError, defaultResolver, delegate, parsePath, type AddrResolver } from '../dtab/index.ts';
import { delegatorPage } from '../dtab/delegator-page.ts';
import type { Runtime } from '../runtime.ts';

const MAX_BODY = 64 * 1024;

function reply(res: ServerResponse, status: number, body: string, type = 'text/plain; charset=utf-8'): void {
  res.writeHead(status, undefined, ['content-type', type, 'content-length', String(Buffer.byteLength(body))]);
  res.end(body);
}

async function answer(res: ServerResponse, rt: Runtime | null, dtabText: string, pathText: string): Promise<void> {
  let dtab: Dtab;
  try { dtab = Dtab.parse(dtabText); } catch (e) {
    if (e instanceof DtabParseError) return reply(res, 400, `Invalid dtab: ${e.message}`);
    throw e;
  }
  let path;
  try { path = parsePath(pathText); } catch (e) {
    if (e instanceof DtabParseError) return reply(res, 400, `Invalid path: ${e.message}`);
    throw e;
  }
  if (!rt) return reply(res, 503, 'no config loaded yet');
  // Mesh names resolve to their cluster's endpoints (the subset's, or the service's default).
  const resolve: AddrResolver = async (b) => {
    if (b.id[0] !== '#' || b.id[1] !== 'meshlet') return defaultResolver(b);
    const vh = rt.routes.forHost(b.id[2]);
    const svc = vh ? rt.snapshot.services.find((x) => x.host === vh.service) : undefined;
    if (!svc) return { type: 'neg' };
    const cluster = rt.snapshot.clusters.find((c) => c.service === svc.host && c.subset === (b.id[3] ?? '') && c.port === svc.ports[0].number);
    if (!cluster || cluster.endpoints.length === 0) return { type: 'neg' };
    return { type: 'bound', addrs: cluster.endpoints.map((e) => ({ ip: e.address, port: e.port, meta: e.labels })), meta: {} };
  };
  const body = await Promise.race([
    delegate(rt.naming.interpreter, dtab, path, resolve),
    new Promise<null>((r) => setTimeout(() => r(null), 2000).unref()),
  ]);
  if (body === null) return reply(res, 503, 'Request timed out.');
  reply(res, 200, JSON.stringify(body), 'application/json');
}

export function delegatorHandler(runtime: () => Runtime | null) {
  return (req: ServerRequest, res: ServerResponse, url: URL): boolean => {
    if (url.pathname === '/delegator') {
      reply(res, 200, delegatorPage(runtime()?.snapshot.dtab ?? ''), 'text/html; charset=utf-8');
      return true;
    }
    if (url.pathname !== '/delegator.json') return false;
    const fail = (e: unknown) => { if (!res.headersSent) reply(res, 500, (e as Error).message); };
    if (req.method === 'GET') {
      answer(res, runtime(), url.searchParams.get('dtab') ?? '', url.searchParams.get('path') ?? '').catch(fail);
      return true;
    }
    if (req.method !== 'POST') { reply(res, 405, 'method not allowed'); return true; }
    // Linkerd accepts exactly application/json (a charset suffix is a 415).
    if (req.header('content-type') !== 'application/json') { reply(res, 415, 'Content-Type must be application/json'); return true; }
    req.collect(MAX_BODY, (buf) => {
      if (buf === null) return reply(res, 413, 'request body too large');
      const body = buf.toString('utf8');
      let v: { dtab?: unknown; path?: unknown };
      try { v = JSON.parse(body); } catch { v = {}; }
      if (typeof v !== 'object' || v === null || typeof v.dtab !== 'string' || typeof v.path !== 'string') {
        return reply(res, 400, `Malformed delegation request: ${body}`);
      }
      answer(res, runtime(), v.dtab, v.path).catch(fail);
    });
    return true;
  };
}
