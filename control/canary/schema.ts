// The Canary resource (and MetricTemplate), defined once with TypeBox in the style of
// proxy/config/resources.schema.ts: Flagger's field names and defaults (fluxcd/flagger
// pkg/apis/flagger/v1beta1/canary.go, read for docs/canary.md), plus a few meshlet fields (marked
// "meshlet:"). Objects are closed: a misspelt field is an error listing the known ones.
//
// Only the control server reads these kinds (the proxy skips them, resources.ts CONTROL_KINDS), so
// the check is compiled here at first use instead of ahead of time: control may load TypeBox.
import Type, { type TProperties, type TSchema } from 'typebox';
import { DURATION_PATTERN } from '../../proxy/config/duration.ts';
import { httpMatch } from '../../proxy/config/resources.schema.ts';

const closed = <P extends TProperties>(properties: P, description?: string) =>
  Type.Object(properties, { additionalProperties: false, ...(description ? { description } : {}) });
const opt = Type.Optional;
const str = (description?: string) => Type.String(description ? { description } : {});
const nonEmpty = (description?: string) => Type.String({ minLength: 1, ...(description ? { description } : {}) });
const int = (minimum: number, maximum: number | undefined, description: string) =>
  Type.Integer({ minimum, ...(maximum !== undefined ? { maximum } : {}), description });
const num = (description: string) => Type.Number({ description });
const duration = (description: string) => Type.String({ pattern: DURATION_PATTERN, description: `${description} (a duration like "1s", "30s", "1m")` });

export const HOOK_TYPES = ['confirm-rollout', 'pre-rollout', 'rollout', 'confirm-traffic-increase', 'confirm-promotion', 'post-rollout', 'rollback', 'event'] as const;

const metric = closed({
  name: nonEmpty('request-success-rate (non-5xx %), request-duration (p99 ms), or any name with templateRef'),
  thresholdRange: opt(closed({ min: opt(num('fail below')), max: opt(num('fail above')) })),
  interval: opt(duration('window of the query; unset = 1m (Flagger)')),
  templateRef: opt(closed({ name: nonEmpty(), namespace: opt(str()) }, 'a MetricTemplate (provider prometheus)')),
  minSamples: opt(int(1, undefined, 'meshlet: requests the window needs before the check can pass; fewer = "insufficient samples" (a halt, not a pass); unset = 20')),
  relative: opt(closed({
    maxDecrease: opt(num('request-success-rate: points the candidate may be below the primary (e.g. 0.5)')),
    maxIncreasePercent: opt(num('request-duration: percent the candidate p99 may be above the primary (e.g. 20)')),
  }, 'meshlet: compare with the primary over the same window, decided by a sequential test (docs/canary.md)')),
});

const webhook = closed({
  name: nonEmpty(),
  type: opt(Type.Enum([...HOOK_TYPES], { description: 'unset = rollout (Flagger)' })),
  url: nonEmpty('http(s) URL; or meshlet:load (the built-in load generator, through the mesh), meshlet:gate (a manual gate: `meshlet ctl canary approve`)'),
  timeout: opt(duration('unset = 10s')),
  retries: opt(int(0, 10, 'unset = 0')),
  muteAlert: opt(Type.Boolean()),
  metadata: opt(Type.Record(Type.String(), Type.String(), { description: 'sent in the payload; meshlet:load reads qps, duration, c, path, via (host:port of a sidecar outbound listener)' })),
});

export const analysisSpec = closed({
  interval: opt(duration('between checks; unset = 60s; meshlet allows down to 1s (Flagger clamps to 10s)')),
  threshold: opt(int(0, undefined, 'failed checks before rollback; unset or 0 = 1')),
  maxWeight: opt(int(1, 100, 'unset = the last stepWeights entry, else 100')),
  stepWeight: opt(int(0, 100, 'linear step; 0 = use stepWeights')),
  stepWeights: opt(Type.Array(int(1, 100, 'a weight'), { description: 'the weights to step through' })),
  stepWeightPromotion: opt(int(0, 100, 'after maxWeight, move the rest of the traffic by this step per interval; 0 = in one step')),
  iterations: opt(int(0, undefined, 'with match: A/B; alone: blue/green; the number of checks before promotion')),
  match: opt(Type.Array(httpMatch, { description: 'A/B: requests matching any of these go to the candidate' })),
  mirror: opt(Type.Boolean({ description: 'canary: one interval of mirroring before shifting; blue/green: mirror for the whole run' })),
  mirrorWeight: opt(int(0, 100, 'percent mirrored; unset = 100')),
  sessionAffinity: opt(closed({
    cookieName: nonEmpty('set on candidate responses; its holders stay on the candidate'),
    maxAge: opt(int(1, undefined, 'seconds; unset = 86400')),
    primaryCookieName: opt(nonEmpty('set on primary responses; its holders stay on the primary')),
  })),
  metrics: opt(Type.Array(metric)),
  webhooks: opt(Type.Array(webhook)),
  fastRollback: opt(closed({
    successRateBelow: opt(num('roll back at once when the candidate\'s success rate over the last reports is below this percent; unset = 50; 0 = off')),
    minRequests: opt(int(1, undefined, 'requests needed for that decision; unset = 10')),
    onEjection: opt(Type.Boolean({ description: 'roll back when all the candidate\'s endpoints are ejected; unset = true' })),
  }, 'meshlet: rollback from data-plane signals within a report interval')),
});

export const canarySpec = closed({
  targetRef: closed({ kind: opt(str('Service (meshlet); Deployment accepted (its name = the service)')), name: nonEmpty('the service (ServiceEntry host or short name)'), apiVersion: opt(str()) }),
  primary: opt(closed({ subset: nonEmpty() }, 'unset = the subset taking the traffic now')),
  canary: opt(closed({ subset: nonEmpty() }, 'unset = a new version detected from registered endpoints')),
  analysis: opt(analysisSpec),
  progressDeadlineSeconds: opt(int(1, undefined, 'a run that makes no progress for this long is rolled back; unset = 600')),
  skipAnalysis: opt(Type.Boolean({ description: 'promote without checks' })),
  suspend: opt(Type.Boolean({ description: 'no analysis while set' })),
  service: opt(Type.Object({}, { additionalProperties: true, description: 'Flagger\'s service block: accepted, not used (meshlet routes by VirtualService)' })),
  provider: opt(str('accepted, not used')),
  revertOnDeletion: opt(Type.Boolean()),
});

export const metricTemplateSpec = closed({
  provider: closed({ type: Type.Enum(['prometheus']), address: nonEmpty('e.g. http://127.0.0.1:9090'), secretRef: opt(Type.Object({}, { additionalProperties: true })) }),
  query: nonEmpty('PromQL returning one number; {{ name }}, {{ namespace }}, {{ target }}, {{ interval }}, {{ variables.x }}'),
});

const metadata = closed({ name: nonEmpty(), namespace: opt(str()), labels: opt(Type.Record(Type.String(), Type.String())), annotations: opt(Type.Record(Type.String(), Type.String())) });

export const CANARY_VERSIONS = ['meshlet.io/v1alpha1', 'flagger.app/v1beta1'];

const doc = <S extends TSchema>(kind: string, spec: S, description: string) => Type.Object({
  apiVersion: Type.Enum(CANARY_VERSIONS), kind: Type.Literal(kind), metadata, spec, status: opt(Type.Any()),
}, { additionalProperties: false, title: `meshlet ${kind}`, description });

export const CANARY_SCHEMAS = {
  Canary: doc('Canary', canarySpec, 'Progressive delivery of a service\'s new version (Flagger\'s Canary), run by the control server from the proxies\' reports.'),
  MetricTemplate: doc('MetricTemplate', metricTemplateSpec, 'A custom metric from a Prometheus server (Flagger\'s MetricTemplate).'),
};
