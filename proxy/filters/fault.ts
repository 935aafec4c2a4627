// Fault injection (Envoy's fault filter as Istio configures it): delay first, then abort.
import type { FaultSpec } from '../config/schema.ts';

export interface FaultDecision { delayMs: number; abortStatus: number }

/** Roll the route's fault percentages for one request; null = no fault this time. */
export function rollFault(f: FaultSpec, random = Math.random): FaultDecision | null {
  const delayMs = f.delay && random() * 100 < f.delay.percent ? f.delay.fixedDelayMs : 0;
  const abortStatus = f.abort && random() * 100 < f.abort.percent ? f.abort.httpStatus : 0;
  return delayMs > 0 || abortStatus > 0 ? { delayMs, abortStatus } : null;
}
