// The fault filter (Envoy's envoy.filters.http.fault as Istio configures it): per route, a fixed
// delay and/or an abort, each with a percentage; delay first (DI), then abort (FI, `fault filter
// abort`). It owns its stats (`http.<listener>.fault.*`), its delay timer and Envoy's
// max_active_faults bound: a fault that would exceed it is not injected (`fault.faults_overflow`).
// Aborts never reach the router: not retried, not counted on the cluster, no outlier event.
import type { HttpFilter, HttpStream } from '../../listener/stream.ts';
import { Flag } from '../../core/stream-info.ts';
import { BODY } from '../../local-reply.ts';
import { GAUGES } from '../../telemetry/stats.ts';
import { rollFault } from './config.ts';

export interface FaultOptions {
  /** Envoy's max_active_faults; Infinity (Envoy's and Istio's default) = no bound. */
  maxActiveFaults: number;
}

const FAULT_STATS = ['fault.delays_injected', 'fault.aborts_injected', 'fault.faults_overflow', 'fault.active_faults'] as const;
type FaultStats = Record<(typeof FAULT_STATS)[number], number>;
GAUGES.add('fault.active_faults');

/** One request's active fault: it holds an active_faults slot until the stream ends. */
class ActiveFault {
  readonly s: HttpStream;
  readonly filter: FaultFilter;
  readonly abortStatus: number;
  readonly grpcStatus: number;
  timer: NodeJS.Timeout | null = null;
  constructor(s: HttpStream, filter: FaultFilter, abortStatus: number, grpcStatus: number) {
    this.s = s;
    this.filter = filter;
    this.abortStatus = abortStatus;
    this.grpcStatus = grpcStatus;
  }
}

export class FaultFilter implements HttpFilter {
  readonly name = 'fault';
  readonly stats: FaultStats;
  private readonly maxActive: number;

  constructor(opts: FaultOptions) {
    this.maxActive = opts.maxActiveFaults;
    this.stats = Object.fromEntries(FAULT_STATS.map((k) => [k, 0])) as FaultStats;
  }

  onRequest(s: HttpStream): boolean {
    const cfg = s.route?.fault;
    if (!cfg) return true;
    const d = rollFault(cfg);
    if (d === null) return true;
    const st = this.stats;
    if (st['fault.active_faults'] >= this.maxActive) { st['fault.faults_overflow']++; return true; }
    st['fault.active_faults']++;
    const a = new ActiveFault(s, this, d.abortStatus, d.grpcStatus ?? -1);
    s.setState(this, a);
    if (d.delayMs > 0) {
      // The route timeout starts after the delay: the router has not seen the request yet.
      s.info.addFlag(Flag.DI);
      st['fault.delays_injected']++;
      a.timer = setTimeout(delayDone, d.delayMs, a);
      return false;
    }
    this.abort(a);
    return false;
  }

  abort(a: ActiveFault): void {
    this.stats['fault.aborts_injected']++;
    // abort.grpcStatus: a gRPC request gets that status itself (HTTP 200), as Envoy's grpc_status abort.
    a.s.sendLocalReply(a.abortStatus, BODY.faultAbort, Flag.FI, undefined, a.grpcStatus);
  }

  onDone(s: HttpStream): void {
    const a = s.state<ActiveFault>(this);
    if (a === undefined) return;
    if (a.timer !== null) { clearTimeout(a.timer); a.timer = null; }
    this.stats['fault.active_faults']--;
  }
}

function delayDone(a: ActiveFault): void {
  a.timer = null;
  const s = a.s;
  if (s.done) return;
  try {
    if (a.abortStatus > 0) a.filter.abort(a);
    else s.continue();
  } catch (e) { s.fail('fault', e); }
}
