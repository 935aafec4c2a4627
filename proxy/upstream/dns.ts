// DNS discovery for a ServiceEntry with `resolution: DNS` (Envoy STRICT_DNS) or
// `DNS_ROUND_ROBIN` (Envoy LOGICAL_DNS). Each target endpoint names a host; every address it
// resolves to becomes a host of the cluster with the target's port and labels (LOGICAL_DNS: only
// the first address). Names are re-resolved every refresh interval; a name that fails to resolve
// keeps its last good addresses (Envoy keeps the hosts on a failed resolution), and a name never
// resolved contributes no host (a cluster with none answers 503 UH). Only what the resolver
// returns is used: no request ever waits on DNS.
import { lookup as osLookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { EndpointSpec } from '../config/schema.ts';

/** Resolve a host name to IP addresses. The default is the OS resolver (getaddrinfo: /etc/hosts, then DNS). */
export type DnsLookup = (hostname: string) => Promise<string[]>;

/**
 * Istio configures DNS clusters with dns_lookup_family V4_ONLY on IPv4 proxies; getaddrinfo
 * answers /etc/hosts names (localhost) without a query on the wire.
 */
export const systemLookup: DnsLookup = async (name) => (await osLookup(name, { all: true, family: 4 })).map((a) => a.address);

/** Envoy's dns_refresh_rate default. */
export const DNS_REFRESH_MS = 5_000;
/** A lookup that has not answered by then counts as failed (Envoy's c-ares default timeout is 5 s). */
export const DNS_TIMEOUT_MS = 5_000;

export interface DnsStats { update_attempt: number; update_success: number; update_failure: number; membership_change: number }

export interface DnsOptions {
  mode: 'DNS' | 'DNS_ROUND_ROBIN';
  lookup?: DnsLookup;
  refreshMs?: number;
  timeoutMs?: number;
  stats: DnsStats;
  /** The resolved host list, called when it changes (and once after the first round). */
  onHosts(hosts: EndpointSpec[]): void;
  /** A name failed to resolve (it keeps its last good addresses, if any); once until it resolves again. */
  onError?(name: string, err: Error): void;
}

export class DnsDiscovery {
  private targets: EndpointSpec[];
  private readonly opts: DnsOptions;
  private readonly lookup: DnsLookup;
  private readonly last = new Map<string, string[]>();  // name -> last good addresses
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private again = false;
  private stopped = false;
  private lastKey: string | null = null;
  private readonly failing = new Set<string>();     // names whose latest lookup failed (reported once)
  /** Settles when the first round of lookups has answered or failed: the cluster has warmed. */
  readonly warmed: Promise<void>;
  private markWarm!: () => void;

  constructor(targets: EndpointSpec[], opts: DnsOptions) {
    this.targets = targets;
    this.opts = opts;
    this.lookup = opts.lookup ?? systemLookup;
    this.warmed = new Promise((r) => { this.markWarm = r; });
    void this.refresh();
  }

  /** New target endpoints (a config update): resolve now, keep what is known meanwhile. */
  setTargets(targets: EndpointSpec[]): void {
    this.targets = targets;
    void this.refresh();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.markWarm();
  }

  /** One round: every distinct name, concurrently; rounds never overlap (a request during one queues one more). */
  refresh(): Promise<void> {
    if (this.running) { this.again = true; return this.running; }
    if (this.timer) { clearTimeout(this.timer); this.timer = null; }
    this.running = this.round().finally(() => {
      this.running = null;
      this.markWarm();
      if (this.stopped) return;
      if (this.again) { this.again = false; void this.refresh(); return; }
      this.timer = setTimeout(() => { this.timer = null; void this.refresh(); }, this.opts.refreshMs ?? DNS_REFRESH_MS);
      this.timer.unref();
    });
    return this.running;
  }

  private async round(): Promise<void> {
    const names = [...new Set(this.targets.map((t) => t.address))];
    await Promise.all(names.map(async (name) => {
      if (isIP(name)) { this.last.set(name, [name]); return; }
      this.opts.stats.update_attempt++;
      try {
        const addrs = await this.withTimeout(name);
        if (this.stopped) return;
        if (addrs.length === 0) throw new Error(`no addresses for ${name}`);
        this.last.set(name, addrs);
        this.opts.stats.update_success++;
        this.failing.delete(name);
      } catch (e) {
        if (this.stopped) return;
        this.opts.stats.update_failure++;
        if (!this.failing.has(name)) { this.failing.add(name); this.opts.onError?.(name, e as Error); }
      }
    }));
    if (this.stopped) return;
    for (const name of [...this.last.keys()]) if (!names.includes(name)) this.last.delete(name);
    const hosts = this.hosts();
    const key = JSON.stringify(hosts);
    if (key !== this.lastKey) {
      if (this.lastKey !== null) this.opts.stats.membership_change++;
      this.lastKey = key;
      this.opts.onHosts(hosts);
    }
  }

  private withTimeout(name: string): Promise<string[]> {
    const ms = this.opts.timeoutMs ?? DNS_TIMEOUT_MS;
    let t: NodeJS.Timeout;
    return Promise.race([
      this.lookup(name),
      new Promise<never>((_, reject) => { t = setTimeout(() => reject(new Error(`DNS lookup of ${name} timed out after ${ms} ms`)), ms); t.unref(); }),
    ]).finally(() => clearTimeout(t));
  }

  /** Every resolved address of every target, in target order, without duplicates. */
  private hosts(): EndpointSpec[] {
    const out: EndpointSpec[] = [];
    const seen = new Set<string>();
    for (const t of this.targets) {
      const addrs = this.last.get(t.address) ?? [];
      for (const a of this.opts.mode === 'DNS_ROUND_ROBIN' ? addrs.slice(0, 1) : addrs) {
        const k = `${a}:${t.port}|${JSON.stringify(t.labels)}`;
        if (seen.has(k)) continue;
        seen.add(k);
        out.push({ address: a, port: t.port, labels: t.labels, ...(isIP(t.address) ? {} : { hostname: t.address }) });
      }
    }
    return out;
  }
}
