// The mesh view's numbers: proxies report per-edge traffic every few seconds; this keeps a short
// rolling window per edge and turns it into the topology JSON the page draws.
import { bucketPercentile, EDGE_BUCKETS_MS, type EdgeReport } from '../../proxy/telemetry/edges.ts';

export interface EdgesReport {
  node: string;          // node id of the reporting sidecar
  service: string;       // its service (source of the edges)
  version: string;
  edges: EdgeReport[];
}

interface Sample { at: number; r: EdgeReport }

export interface TopologyEdge {
  source: string;
  destination: string;
  rps: number;
  successRate: number;
  p50Ms: number;
  p99Ms: number;
  broken: boolean;
  reason: string | null;
}

export interface Topology {
  nodes: Array<{ id: string; service: string; version: string }>;
  edges: TopologyEdge[];
  window_s: number;
}

export function shortName(host: string): string {
  return host.endsWith('.svc.cluster.local') ? host.split('.')[0] : host;
}

function nodeId(service: string, version: string): string {
  return version ? `${service}:${version}` : service;
}

/**
 * The bounds proxies reported in before the edge report became a view of the Istio histogram
 * (15 counts). A control server upgraded ahead of its proxies still takes those reports: each old
 * bucket is counted in the first current bucket whose bound is not below its own (0.5, 1, 5, 10, …
 * are shared; "≤ 2 ms" becomes "≤ 5 ms"), and the old open bucket (> 10 s) as "≤ 30 s".
 */
const LEGACY_EDGE_BUCKETS_MS = [0.5, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000];

function rebinLegacy(old: number[]): number[] {
  const out = new Array<number>(EDGE_BUCKETS_MS.length + 1).fill(0);
  for (let i = 0; i < old.length; i++) {
    const bound = i < LEGACY_EDGE_BUCKETS_MS.length ? LEGACY_EDGE_BUCKETS_MS[i] : LEGACY_EDGE_BUCKETS_MS[LEGACY_EDGE_BUCKETS_MS.length - 1] + 1;
    const j = EDGE_BUCKETS_MS.findIndex((b) => b >= bound);
    out[j < 0 ? EDGE_BUCKETS_MS.length : j] += old[i];
  }
  return out;
}

/** Validate a report's shape (it comes from the network); throws with the field at fault. */
export function parseEdgesReport(v: unknown): EdgesReport {
  const o = v as Record<string, unknown>;
  if (!o || typeof o !== 'object') throw new Error('report must be an object');
  for (const k of ['node', 'service'] as const) if (typeof o[k] !== 'string' || !o[k]) throw new Error(`report.${k} must be a non-empty string`);
  if (o.version !== undefined && typeof o.version !== 'string') throw new Error('report.version must be a string');
  if (!Array.isArray(o.edges)) throw new Error('report.edges must be a list');
  const edges = o.edges.map((e, i) => {
    const x = e as Record<string, unknown>;
    const num = (k: string) => { if (typeof x[k] !== 'number' || !Number.isFinite(x[k]) || (x[k] as number) < 0) throw new Error(`report.edges[${i}].${k} must be a non-negative number`); return x[k] as number; };
    if (typeof x.destination !== 'string' || typeof x.subset !== 'string') throw new Error(`report.edges[${i}]: destination and subset must be strings`);
    const n = EDGE_BUCKETS_MS.length + 1;
    const legacy = LEGACY_EDGE_BUCKETS_MS.length + 1;
    if (!Array.isArray(x.buckets) || (x.buckets.length !== n && x.buckets.length !== legacy) || x.buckets.some((b) => typeof b !== 'number' || !Number.isFinite(b) || b < 0)) {
      throw new Error(`report.edges[${i}].buckets must be ${n} non-negative counts (or ${legacy} in the earlier layout)`);
    }
    const buckets = x.buckets.length === n ? x.buckets as number[] : rebinLegacy(x.buckets as number[]);
    const flags: Record<string, number> = {};
    if (x.flags && typeof x.flags === 'object') for (const [k, n] of Object.entries(x.flags as Record<string, unknown>)) if (typeof n === 'number') flags[k] = n;
    return { destination: x.destination, subset: x.subset, requests: num('requests'), errors5xx: num('errors5xx'), flags, buckets, healthy: num('healthy'), total: num('total') };
  });
  return { node: o.node as string, service: o.service as string, version: (o.version as string | undefined) ?? '', edges };
}

export class TopologyWindow {
  readonly windowMs: number;
  private edges = new Map<string, { source: string; service: string; version: string; dest: string; destService: string; destVersion: string; samples: Sample[] }>();
  private nodes = new Map<string, { service: string; version: string; at: number }>();
  now: () => number = () => Date.now();

  constructor(windowS = 30) { this.windowMs = windowS * 1000; }

  ingest(rep: EdgesReport): void {
    const at = this.now();
    const src = nodeId(shortName(rep.service), rep.version);
    this.nodes.set(src, { service: shortName(rep.service), version: rep.version, at });
    for (const e of rep.edges) {
      const destService = shortName(e.destination);
      const dst = nodeId(destService, e.subset);
      this.nodes.set(dst, { service: destService, version: e.subset, at: Math.max(at, this.nodes.get(dst)?.at ?? 0) });
      const key = `${src}->${dst}`;
      let edge = this.edges.get(key);
      if (!edge) { edge = { source: src, service: rep.service, version: rep.version, dest: dst, destService, destVersion: e.subset, samples: [] }; this.edges.set(key, edge); }
      edge.samples.push({ at, r: e });
    }
  }

  private prune(): void {
    const cutoff = this.now() - this.windowMs;
    for (const [k, e] of this.edges) {
      while (e.samples.length > 0 && e.samples[0].at < cutoff) e.samples.shift();
      if (e.samples.length === 0) this.edges.delete(k);
    }
    for (const [k, n] of this.nodes) if (n.at < cutoff) this.nodes.delete(k);
  }

  topology(): Topology {
    this.prune();
    const edges: TopologyEdge[] = [];
    for (const e of this.edges.values()) {
      let requests = 0, errors = 0;
      const buckets = new Array<number>(EDGE_BUCKETS_MS.length + 1).fill(0);
      const flags: Record<string, number> = {};
      for (const { r } of e.samples) {
        requests += r.requests;
        errors += r.errors5xx;
        r.buckets.forEach((b, i) => { buckets[i] += b; });
        for (const [f, n] of Object.entries(r.flags)) flags[f] = (flags[f] ?? 0) + n;
      }
      const last = e.samples[e.samples.length - 1].r;
      const span = Math.max(1000, Math.min(this.windowMs, this.now() - e.samples[0].at + 5000));
      const successRate = requests > 0 ? (requests - errors) / requests : 1;
      let reason: string | null = null;
      if (last.total > 0 && last.healthy === 0) reason = 'ejection';
      else if (requests > 0 && successRate < 0.5) {
        const top = Object.entries(flags).sort((a, b) => b[1] - a[1])[0]?.[0];
        reason = top === 'UO' ? 'overflow' : top === 'UT' ? 'timeout' : top === 'UH' ? 'ejection' : top ? `failing (${top})` : 'failing (5xx)';
      }
      edges.push({
        source: e.source, destination: e.dest, rps: Math.round((requests / (span / 1000)) * 10) / 10,
        successRate: Math.round(successRate * 1000) / 1000, p50Ms: bucketPercentile(buckets, 0.5), p99Ms: bucketPercentile(buckets, 0.99),
        broken: reason !== null, reason,
      });
    }
    const nodes = [...this.nodes].map(([id, n]) => ({ id, service: n.service, version: n.version }));
    nodes.sort((a, b) => (a.id < b.id ? -1 : 1));
    edges.sort((a, b) => (a.source + a.destination < b.source + b.destination ? -1 : 1));
    return { nodes, edges, window_s: this.windowMs / 1000 };
  }
}

export interface Split {
  service: string;
  route: string;
  versions: Array<{ version: string; weight: number; observed: number | null }>;
}

/** Configured weights (from the snapshot's routes) next to the observed share per version. */
export function splits(vhosts: Array<{ service: string; routes: Array<{ name: string; destinations: Array<{ host: string; subset: string; weight: number }> }> }>, topo: Topology): Split[] {
  const out: Split[] = [];
  for (const vh of vhosts) {
    if (!vh.service) continue;
    const svc = shortName(vh.service);
    const rps = new Map<string, number>();
    let total = 0;
    for (const e of topo.edges) {
      const [dService, dVersion = ''] = e.destination.split(':');
      if (dService !== svc) continue;
      rps.set(dVersion, (rps.get(dVersion) ?? 0) + e.rps);
      total += e.rps;
    }
    for (const r of vh.routes) {
      if (r.destinations.length < 2) continue; // a split needs two destinations
      out.push({
        service: svc, route: r.name,
        versions: r.destinations.map((d) => ({ version: d.subset, weight: d.weight, observed: total > 0 ? Math.round((1000 * (rps.get(d.subset) ?? 0)) / total) / 10 : null })),
      });
    }
  }
  return out;
}
