// Prometheus gauges of the canaries on the control server (GET /metrics on the ops port): what
// Flagger users ask for in flagger #1304 and #1810 — not only the status but each metric's last
// value next to its threshold, so a dashboard shows why a run halted.
//   meshlet_canary_weight{name,namespace}                     canary weight (percent)
//   meshlet_canary_status{name,namespace}                     0 running, 1 succeeded, 2 failed (Flagger's flagger_canary_status), 3 other
//   meshlet_canary_phase{name,namespace,phase}                1 for the current phase
//   meshlet_canary_failed_checks{name,namespace}
//   meshlet_canary_metric_value{name,namespace,metric}        the last check's value (absent while insufficient)
//   meshlet_canary_metric_samples{name,namespace,metric}      requests in its window
//   meshlet_canary_metric_threshold{name,namespace,metric,bound="min"|"max"}
import { createRequire } from 'node:module';
import type { Gauge as GaugeT, Registry as RegistryT } from 'prom-client';
import { PHASES, type CanaryController } from './controller.ts';

const req = createRequire(import.meta.url);
const Registry = req('prom-client/lib/registry.js') as typeof RegistryT;
const Gauge = req('prom-client/lib/gauge.js') as typeof GaugeT;

export async function canaryExposition(c: CanaryController): Promise<string> {
  const registry = new Registry();
  const g = (name: string, help: string, labelNames: string[]) => new Gauge({ name, help, labelNames, registers: [registry] });
  const weight = g('meshlet_canary_weight', 'Canary weight (percent of the traffic to the candidate)', ['name', 'namespace']);
  const status = g('meshlet_canary_status', 'Canary status: 0 running, 1 succeeded, 2 failed, 3 initialized/waiting', ['name', 'namespace']);
  const phase = g('meshlet_canary_phase', 'Current phase (1)', ['name', 'namespace', 'phase']);
  const failed = g('meshlet_canary_failed_checks', 'Failed checks of the current run', ['name', 'namespace']);
  const value = g('meshlet_canary_metric_value', 'Last value of each analysis metric', ['name', 'namespace', 'metric']);
  const samples = g('meshlet_canary_metric_samples', 'Requests in the last check\'s window', ['name', 'namespace', 'metric']);
  const threshold = g('meshlet_canary_metric_threshold', 'Threshold of each analysis metric', ['name', 'namespace', 'metric', 'bound']);
  for (const v of c.list()) {
    const l = { name: v.name, namespace: v.namespace };
    const s = v.status;
    weight.set(l, s.canaryWeight);
    status.set(l, s.phase === 'Succeeded' ? 1 : s.phase === 'Failed' ? 2 : ['Progressing', 'WaitingPromotion', 'Promoting', 'Finalising'].includes(s.phase) ? 0 : 3);
    for (const p of PHASES) phase.set({ ...l, phase: p }, p === s.phase ? 1 : 0);
    failed.set(l, s.failedChecks);
    for (const m of v.spec.analysis?.metrics ?? []) {
      const last = s.checks.find((x) => x.metric === m.name);
      if (last?.value !== null && last?.value !== undefined) value.set({ ...l, metric: m.name }, last.value);
      if (last) samples.set({ ...l, metric: m.name }, last.samples);
      if (m.thresholdRange?.min !== undefined) threshold.set({ ...l, metric: m.name, bound: 'min' }, m.thresholdRange.min);
      if (m.thresholdRange?.max !== undefined) threshold.set({ ...l, metric: m.name, bound: 'max' }, m.thresholdRange.max);
    }
  }
  return registry.metrics();
}
