// The canary part of the ops API (port 15014):
//   GET  /api/v1/canaries                      every canary: spec, status, weights over time, events
//   GET  /api/v1/canaries/<name>               one ("<namespace>/<name>" or "<name>")
//   POST /api/v1/canaries                      a Canary document (JSON): validated, written to
//                                              canary-<name>.yaml in the config directory (so git
//                                              and a restart see it), then read like any file
//   POST /api/v1/canaries/<name>/<action>      approve | pause | resume | abort | start {version}
//   GET  /metrics                              Prometheus gauges of the canaries (gauges.ts)
import { renameSync, writeFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { HttpError, readJson, sendError, sendJson } from '../http.ts';
import type { CanaryController } from './controller.ts';
import { canaryExposition } from './gauges.ts';
import { parseCanary, type CanaryFeed } from './source.ts';

export function canaryApi(c: CanaryController, dir: string, reread: () => void) {
  return async (req: IncomingMessage, res: ServerResponse, url: URL): Promise<boolean> => {
    const p = url.pathname;
    if (p === '/metrics' && req.method === 'GET') {
      const text = await canaryExposition(c);
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8', 'content-length': Buffer.byteLength(text) });
      res.end(text);
      return true;
    }
    if (!p.startsWith('/api/v1/canaries')) return false;
    try {
      const rest = p.slice('/api/v1/canaries'.length).split('/').filter(Boolean).map(decodeURIComponent);
      if (req.method === 'GET') {
        if (rest.length === 0) { sendJson(res, 200, { canaries: c.list(), errors: c.errors }); return true; }
        if (rest.length <= 2 && !['approve', 'pause', 'resume', 'abort', 'start'].includes(rest[rest.length - 1])) { sendJson(res, 200, c.get(rest.join('/'))); return true; }
      }
      if (req.method === 'POST') {
        const body = await readJson(req);
        if (rest.length === 0) {
          const out: CanaryFeed = { canaries: [], templates: [], errors: [] };
          if (body.kind !== 'Canary') throw new HttpError(400, 'body must be a Canary document (kind: Canary)');
          parseCanary('api', body, 'api', out);
          if (out.errors.length) throw Object.assign(new HttpError(400, `rejected: ${out.errors.join('; ')}`), { errors: out.errors });
          const name = out.canaries[0].name;
          if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(name)) throw new HttpError(400, `metadata.name "${name}" must be a DNS label`);
          const file = join(dir, `canary-${name}.yaml`);
          const tmp = join(dir, `.canary-${name}.${process.pid}.tmp`);
          writeFileSync(tmp, `# Written by the ops API (POST /api/v1/canaries); safe to edit or commit.\n${stringify(body)}`);
          renameSync(tmp, file);
          reread();
          sendJson(res, 200, { written: file, canary: c.get(name) });
          return true;
        }
        const action = rest[rest.length - 1];
        const name = rest.slice(0, -1).join('/');
        if (!name) throw new HttpError(404, `no route POST ${p}`);
        const version = typeof body.version === 'string' ? body.version : undefined;
        sendJson(res, 200, await c.action(name, action, version));
        return true;
      }
      throw new HttpError(404, `no route ${req.method} ${p}`);
    } catch (e) {
      sendError(res, e);
    }
    return true;
  };
}
