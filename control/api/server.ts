// The ops API (port 15014): read the state (proxies, config, endpoints) and change routing
// (weights, promote, remove-version, rollback). Changes go through ControlState.applyOps, which
// validates them like any edit and writes them to the ops file in the config directory.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { HttpError, field, readJson, sendError, sendJson } from '../http.ts';
import type { ControlState } from '../state.ts';
import type { Discovery } from '../discovery/server.ts';
import { promote, removeVersion, rollback, setWeights } from './ops.ts';

export function apiHandler(state: ControlState, discovery: Discovery) {
  return async (req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> => {
    try {
      const p = url.pathname;
      if (req.method === 'GET') {
        if (p === '/v1/proxies') return sendJson(res, 200, { version: state.current()?.snapshot.version ?? null, proxies: discovery.views() });
        if (p === '/v1/config') return sendJson(res, 200, state.describe(url.searchParams.has('snapshot')));
        if (p === '/v1/endpoints') return sendJson(res, 200, { ttl_ms: state.registry.ttlMs, endpoints: state.registry.list().map((e) => ({ ...e, registeredAt: new Date(e.registeredAt).toISOString(), expiresAt: new Date(e.expiresAt).toISOString() })) });
        if (p === '/' ) return sendJson(res, 200, { endpoints: ['GET /v1/proxies', 'GET /v1/config[?snapshot]', 'GET /v1/endpoints', 'POST /v1/weights', 'POST /v1/promote', 'POST /v1/remove-version', 'POST /v1/rollback'] });
      }
      if (req.method === 'POST') {
        const body = p.startsWith('/v1/') ? await readJson(req) : {};
        switch (p) {
          case '/v1/weights': {
            const host = field(body, 'host');
            const w = body.weights;
            if (w === null || typeof w !== 'object' || Array.isArray(w)) throw new HttpError(400, 'field "weights" must be an object {subset: weight}');
            const weights: Record<string, number> = {};
            for (const [k, v] of Object.entries(w)) {
              if (typeof v !== 'number') throw new HttpError(400, `weights.${k} must be a number`);
              weights[k] = v;
            }
            return sendJson(res, 200, await state.applyOps(host, `weights ${host}`, (ctx) => setWeights(ctx, host, weights)));
          }
          case '/v1/promote': {
            const host = field(body, 'host');
            const subset = field(body, 'subset');
            return sendJson(res, 200, await state.applyOps(host, `promote ${host} ${subset}`, (ctx) => promote(ctx, host, subset)));
          }
          case '/v1/remove-version': {
            const host = field(body, 'host');
            const subset = field(body, 'subset');
            return sendJson(res, 200, await state.applyOps(host, `remove-version ${host} ${subset}`, (ctx) => removeVersion(ctx, host, subset)));
          }
          case '/v1/rollback': {
            const host = field(body, 'host');
            return sendJson(res, 200, await state.applyOps(host, `rollback ${host}`, (ctx) => rollback(ctx, host)));
          }
        }
      }
      sendJson(res, 404, { error: `no route ${req.method} ${p}` });
    } catch (e) {
      sendError(res, e);
    }
  };
}
