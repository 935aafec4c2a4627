// MetricTemplate provider "prometheus" (Flagger's pkg/metrics/providers/prometheus.go): render the
// query's template variables, GET <address>/api/v1/query, one number back. An empty result is
// null (the caller's "no values found": a halt, not a pass).
import type { MetricTemplateSpec } from './source.ts';

export function renderQuery(query: string, vars: Record<string, string>): string {
  return query.replace(/\{\{\s*([a-zA-Z_.]+)\s*\}\}/g, (m, k: string) => {
    const key = k.startsWith('variables.') ? k.slice('variables.'.length) : k;
    return key in vars ? vars[key] : m;
  });
}

export async function prometheusQuery(t: MetricTemplateSpec, vars: Record<string, string>, timeoutMs = 5000): Promise<number | null> {
  const url = new URL('api/v1/query', t.provider.address.endsWith('/') ? t.provider.address : `${t.provider.address}/`);
  url.searchParams.set('query', renderQuery(t.query, vars));
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  const body = await res.json().catch(() => null) as { status?: string; error?: string; data?: { resultType?: string; result?: any } } | null;
  if (!res.ok || body?.status !== 'success') throw new Error(`prometheus ${res.status}: ${body?.error ?? 'bad answer'}`);
  const r = body.data?.result;
  const raw = body.data?.resultType === 'scalar' ? r?.[1] : Array.isArray(r) && r.length > 0 ? r[0].value?.[1] : undefined;
  if (raw === undefined) return null;
  const v = Number(raw);
  return Number.isFinite(v) ? v : null;
}
