// What the control server watches. Discovery kinds (Service, EndpointSlice, Pod) are Kubernetes
// built-ins; config kinds are custom resources read generically: a kind is a group, version,
// plural and what to do with an object (`toResources`). Adding one (e.g. the canary controller's
// Canary) is one entry in CONFIG_KINDS.
import { CoreV1Api, CustomObjectsApi, DiscoveryV1Api, type KubeConfig, type KubernetesListObject, type KubernetesObject } from '@kubernetes/client-node';
import type { Resource } from '../../proxy/config/resources.ts';
import type { KindSpec } from './informer.ts';
import { parseCustom, type KObj } from './translate.ts';
import { httpRouteToResources } from './httproute.ts';

type List = KubernetesListObject<KubernetesObject>;

export const DISCOVERY_KINDS: Record<'services' | 'endpointslices' | 'pods', KindSpec> = {
  services: { label: 'v1 Service', kind: 'Service', path: '/api/v1/services', list: (kc) => kc.makeApiClient(CoreV1Api).listServiceForAllNamespaces() as Promise<List> },
  endpointslices: { label: 'discovery.k8s.io/v1 EndpointSlice', kind: 'EndpointSlice', path: '/apis/discovery.k8s.io/v1/endpointslices', list: (kc) => kc.makeApiClient(DiscoveryV1Api).listEndpointSliceForAllNamespaces() as Promise<List> },
  pods: { label: 'v1 Pod', kind: 'Pod', path: '/api/v1/pods', list: (kc) => kc.makeApiClient(CoreV1Api).listPodForAllNamespaces() as Promise<List> },
};

export interface ConfigKind {
  group: string;
  version: string;
  plural: string;
  kind: string;
  /** An object -> the resources it stands for; errors (naming the object) when it is invalid. */
  toResources(o: KObj, errors: string[]): Resource[];
}

const asResource = (o: KObj, errors: string[]): Resource[] => { const r = parseCustom(o, errors); return r ? [r] : []; };

/**
 * Istio's kinds at networking.istio.io/v1 (served since Istio 1.22; v1beta1 is the same storage
 * with the same schema, so an object written as v1beta1 is read here as v1).
 */
export const CONFIG_KINDS: ConfigKind[] = [
  { group: 'networking.istio.io', version: 'v1', plural: 'virtualservices', kind: 'VirtualService', toResources: asResource },
  { group: 'networking.istio.io', version: 'v1', plural: 'destinationrules', kind: 'DestinationRule', toResources: asResource },
  { group: 'networking.istio.io', version: 'v1', plural: 'serviceentries', kind: 'ServiceEntry', toResources: asResource },
  // Istio's security kinds (security.istio.io/v1, served since Istio 1.22).
  { group: 'security.istio.io', version: 'v1', plural: 'authorizationpolicies', kind: 'AuthorizationPolicy', toResources: asResource },
  { group: 'security.istio.io', version: 'v1', plural: 'peerauthentications', kind: 'PeerAuthentication', toResources: asResource },
  { group: 'security.istio.io', version: 'v1', plural: 'requestauthentications', kind: 'RequestAuthentication', toResources: asResource },
  { group: 'meshlet.io', version: 'v1alpha1', plural: 'dtabs', kind: 'Dtab', toResources: asResource },
  { group: 'gateway.networking.k8s.io', version: 'v1', plural: 'httproutes', kind: 'HTTPRoute', toResources: (o, errors) => httpRouteToResources(o, errors) },
];

export function configKindSpec(k: ConfigKind): KindSpec {
  return {
    label: `${k.group}/${k.version} ${k.kind}`, kind: k.kind, optional: true,
    path: `/apis/${k.group}/${k.version}/${k.plural}`,
    list: (kc: KubeConfig) => kc.makeApiClient(CustomObjectsApi).listClusterCustomObject({ group: k.group, version: k.version, plural: k.plural }) as Promise<List>,
  };
}
