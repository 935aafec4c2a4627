// The mutating admission webhook (admission.k8s.io/v1): kube-apiserver sends an AdmissionReview
// for each Pod CREATE in a namespace labelled meshlet-injection=enabled (the webhook
// configuration's namespaceSelector, `meshlet install`); the answer is the JSONPatch that turns
// the pod into the one `meshlet inject` makes (the same injectPod). A pod that opts out, a
// hostNetwork pod, or anything this cannot read is allowed unchanged (with a warning when it is
// unexpected): the handler never refuses a pod. (The configuration's failurePolicy is Fail, as
// Istio's: while the injector is unreachable, pods of injected namespaces are not created unmeshed.)
import { injectPod, skipReason, type InjectOptions } from '../inject.ts';

type Obj = Record<string, any>;
export interface PatchOp { op: 'add' | 'replace' | 'remove'; path: string; value?: unknown }

const ptr = (s: string) => s.replace(/~/g, '~0').replace(/\//g, '~1');

/**
 * The JSONPatch (RFC 6902) from `before` to `after` for the parts of a pod injection changes:
 * each changed field is added or replaced whole (lists and maps included), which any apiserver
 * applies the same way, whatever order other webhooks ran in.
 */
export function podPatch(before: Obj, after: Obj): PatchOp[] {
  const ops: PatchOp[] = [];
  const field = (parent: string, b: Obj | undefined, a: Obj, key: string) => {
    if (JSON.stringify(b?.[key]) === JSON.stringify(a[key])) return;
    if (a[key] === undefined) ops.push({ op: 'remove', path: `${parent}/${ptr(key)}` });
    else ops.push({ op: b?.[key] === undefined ? 'add' : 'replace', path: `${parent}/${ptr(key)}`, value: a[key] });
  };
  if (before.metadata === undefined) ops.push({ op: 'add', path: '/metadata', value: {} });
  for (const k of ['labels', 'annotations']) field('/metadata', before.metadata, after.metadata, k);
  for (const k of ['initContainers', 'containers', 'volumes']) field('/spec', before.spec, after.spec, k);
  return ops;
}

export interface AdmissionResult { review: Obj; injected: boolean; reason?: string }

export function admit(review: Obj, opts: InjectOptions): AdmissionResult {
  const req = review?.request;
  const uid = req?.uid ?? '';
  const answer = (response: Obj) => ({ apiVersion: review?.apiVersion ?? 'admission.k8s.io/v1', kind: 'AdmissionReview', response: { uid, allowed: true, ...response } });
  const pod = req?.object as Obj | undefined;
  if (!req || req.kind?.kind !== 'Pod' || !pod) {
    return { review: answer({ warnings: ['meshlet: not a Pod admission request; allowed unchanged'] }), injected: false, reason: 'not a Pod' };
  }
  const why = skipReason(pod.metadata, pod.spec);
  if (why) return { review: answer({}), injected: false, reason: why };
  const after = structuredClone(pod);
  after.metadata ??= {};
  try {
    injectPod(after.metadata, after.spec, opts);
  } catch (e) {
    return { review: answer({ warnings: [`meshlet: sidecar not injected: ${(e as Error).message}`] }), injected: false, reason: (e as Error).message };
  }
  const patch = podPatch(pod, after);
  return { review: answer({ patchType: 'JSONPatch', patch: Buffer.from(JSON.stringify(patch)).toString('base64') }), injected: true };
}
