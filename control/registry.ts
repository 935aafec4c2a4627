// Endpoints registered by sidecars (`meshlet proxy --service ... --control ...`). Each entry lives
// for a TTL that the sidecar's heartbeat renews; an entry whose heartbeat stops disappears at the
// next sweep, and a graceful shutdown deregisters at once. Changes are reported to `onChange`.

export interface RegisteredEndpoint {
  node: string;
  service: string;
  labels: Record<string, string>;
  address: string;
  port: number;
  /** The sidecar's workload identity: its endpoint gets tlsMode istio (mTLS is originated to it). */
  serviceAccount?: string;
  registeredAt: number;
  expiresAt: number;
}

export class Registry {
  private readonly entries = new Map<string, RegisteredEndpoint>();
  private readonly timer: NodeJS.Timeout;
  readonly ttlMs: number;
  private readonly onChange: (why: string) => void;

  constructor(ttlMs: number, onChange: (why: string) => void) {
    this.ttlMs = ttlMs;
    this.onChange = onChange;
    // Sweep often enough that an expired endpoint leaves within ~TTL + TTL/4.
    this.timer = setInterval(() => this.sweep(Date.now()), Math.max(50, Math.floor(ttlMs / 4)));
    this.timer.unref();
  }

  /** Register or renew. Returns true when the set of endpoints (not just the expiry) changed. */
  upsert(e: Omit<RegisteredEndpoint, 'registeredAt' | 'expiresAt'>, now = Date.now()): boolean {
    const prev = this.entries.get(e.node);
    const same = prev !== undefined && prev.service === e.service && prev.address === e.address && prev.port === e.port && prev.serviceAccount === e.serviceAccount
      && JSON.stringify(prev.labels) === JSON.stringify(e.labels);
    this.entries.set(e.node, { ...e, registeredAt: same ? prev.registeredAt : now, expiresAt: now + this.ttlMs });
    if (!same) this.onChange(`registered ${e.node} (${e.service} ${e.address}:${e.port})`);
    return !same;
  }

  remove(node: string, why = 'deregistered'): boolean {
    const e = this.entries.get(node);
    if (!e) return false;
    this.entries.delete(node);
    this.onChange(`${why} ${node} (${e.service} ${e.address}:${e.port})`);
    return true;
  }

  sweep(now: number): void {
    for (const [node, e] of this.entries) if (e.expiresAt <= now) this.remove(node, 'expired');
  }

  list(): RegisteredEndpoint[] {
    return [...this.entries.values()].sort((a, b) => a.service.localeCompare(b.service) || a.node.localeCompare(b.node));
  }

  close(): void { clearInterval(this.timer); }
}
