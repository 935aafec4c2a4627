// Canary webhooks with Flagger's payload and rules (docs/gitbook/usage/webhooks.md): POST
// {name, namespace, phase, checksum, metadata}; 200–202 pass; a timeout or anything else fails
// (retried `retries` times). Two meshlet URLs need no extra service:
//   meshlet:gate  a manual gate: passes once `meshlet ctl canary approve <name>` was given
//   meshlet:load  the built-in load generator: `meshlet load` through a sidecar's outbound
//                 listener with an l5d-dtab override that pins the candidate
//                 (/svc/<host> => /#/meshlet/<host>/<version>), so no extra service is needed.
import { spawn, type ChildProcess } from 'node:child_process';
import { parseDuration } from '../../proxy/config/duration.ts';
import type { WebhookSpec } from './source.ts';

export interface HookPayload { name: string; namespace: string; phase: string; checksum: string; metadata: Record<string, string> }
export interface HookResult { ok: boolean; detail: string }

const BIN = new URL('../../bin/meshlet.js', import.meta.url).pathname;

export async function callWebhook(h: WebhookSpec, payload: HookPayload): Promise<HookResult> {
  const timeoutMs = parseDuration(h.timeout ?? '10s') ?? 10_000;
  const body = JSON.stringify({ ...payload, metadata: { ...payload.metadata, ...(h.metadata ?? {}) } });
  let last = '';
  for (let attempt = 0; attempt <= (h.retries ?? 0); attempt++) {
    try {
      const res = await fetch(h.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body, signal: AbortSignal.timeout(timeoutMs) });
      const text = (await res.text()).slice(0, 200);
      if (res.status >= 200 && res.status <= 202) return { ok: true, detail: `${res.status}` };
      last = `${res.status}${text ? ` ${text.trim()}` : ''}`;
    } catch (e) {
      last = (e as Error).name === 'TimeoutError' ? `no answer within ${h.timeout ?? '10s'}` : ((e as { cause?: { code?: string } }).cause?.code ?? (e as Error).message);
    }
  }
  return { ok: false, detail: last };
}

/** One background `meshlet load` per canary run; a rollout hook starts it, the end of the run stops it. */
export class LoadHook {
  private child: ChildProcess | null = null;
  private until = 0;

  /** Start (or keep) the load. metadata: via (host:port of an outbound listener, required), qps (10), c (2), duration (60s), path (/). */
  run(host: string, version: string, metadata: Record<string, string>, now = Date.now()): HookResult {
    const via = metadata.via;
    if (!via || !/^[^\s:]+:\d+$/.test(via)) return { ok: false, detail: 'meshlet:load needs metadata.via: host:port of a sidecar\'s outbound listener' };
    if (this.child && this.child.exitCode === null && now < this.until) return { ok: true, detail: 'load running' };
    const dur = metadata.duration ?? '60s';
    const ms = parseDuration(dur);
    if (ms === undefined) return { ok: false, detail: `meshlet:load: metadata.duration "${dur}" is not a duration` };
    this.stop();
    const args = [BIN, 'load', '-qps', metadata.qps ?? '10', '-c', metadata.c ?? '2', '-t', dur, '-quiet', '-allow-initial-errors',
      '-H', `host: ${host}`, '-H', `l5d-dtab: /svc/${host} => /#/meshlet/${host}/${version}`, `http://${via}${metadata.path ?? '/'}`];
    const child = spawn(process.execPath, args, { stdio: 'ignore' });
    child.on('error', () => {});
    this.child = child;
    this.until = now + ms;
    return { ok: true, detail: `started meshlet load -qps ${metadata.qps ?? '10'} -t ${dur} via ${via} (l5d-dtab /svc/${host} => /#/meshlet/${host}/${version})` };
  }

  stop(): void {
    if (this.child && this.child.exitCode === null) this.child.kill('SIGTERM');
    this.child = null;
  }
}
