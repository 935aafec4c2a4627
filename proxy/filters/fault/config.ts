// The fault filter's per-route config (Envoy's fault filter as Istio configures it: delay first,
// then abort), compiled with the route table, and the roll for one request.
import type { FaultSpec } from '../../config/schema.ts';

/** The spec's shape, kept as is: a delay and/or an abort, each with a percentage. */
export type FaultConfig = FaultSpec;

/** `grpcStatus`: the abort's gRPC status when configured (else a gRPC request gets abortStatus mapped). */
export interface FaultDecision { delayMs: number; abortStatus: number; grpcStatus?: number }

/** A route's fault block, once per snapshot; null = the route injects nothing. */
export function compileFault(spec: FaultSpec | null | undefined): FaultConfig | null {
  if (!spec || (!spec.delay && !spec.abort)) return null;
  return spec;
}

/** Roll the route's fault percentages for one request; null = no fault this time. */
export function rollFault(f: FaultConfig, random = Math.random): FaultDecision | null {
  const delayMs = f.delay !== undefined && random() * 100 < f.delay.percent ? f.delay.fixedDelayMs : 0;
  const abortStatus = f.abort !== undefined && random() * 100 < f.abort.percent ? f.abort.httpStatus : 0;
  if (delayMs === 0 && abortStatus === 0) return null;
  return abortStatus > 0 && f.abort!.grpcStatus !== undefined ? { delayMs, abortStatus, grpcStatus: f.abort!.grpcStatus } : { delayMs, abortStatus };
}
