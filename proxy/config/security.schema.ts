// The security resources (security.istio.io), defined once with TypeBox: the same spec schemas
// are a user's YAML kinds (resources.schema.ts) and what the snapshot carries to proxies
// (snapshot.schema.ts), because a proxy selects and compiles the policies that apply to its own
// workload. Field names and meanings are Istio's (istio/api security/v1beta1/*.proto).
// Not imported at run time (see resources.schema.ts).
import Type, { type TProperties } from 'typebox';

const closed = <P extends TProperties>(properties: P, description?: string) =>
  Type.Object(properties, { additionalProperties: false, ...(description ? { description } : {}) });
const opt = Type.Optional;
const strs = (description: string) => opt(Type.Array(Type.String(), { description }));
const labels = (description: string) => opt(closed({ matchLabels: opt(Type.Record(Type.String(), Type.String())) }, description));

const GLOB = 'exact "abc", prefix "abc*", suffix "*abc", presence "*"';

export const authzSource = closed({
  principals: strs(`peer identities "<trust-domain>/ns/<ns>/sa/<sa>" from the mTLS certificate (${GLOB})`),
  notPrincipals: strs('negative match of principals'),
  requestPrincipals: strs('"<iss>/<sub>" of the verified JWT (RequestAuthentication)'),
  notRequestPrincipals: strs('negative match of requestPrincipals'),
  namespaces: strs('the peer certificate\'s namespace'),
  notNamespaces: strs('negative match of namespaces'),
  serviceAccounts: strs('"<ns>/<sa>", exact, at most 16; not with principals or namespaces'),
  notServiceAccounts: strs('negative match of serviceAccounts'),
  ipBlocks: strs('the connection\'s source address: IPs or CIDR blocks'),
  notIpBlocks: strs('negative match of ipBlocks'),
  remoteIpBlocks: strs('the client per X-Forwarded-For and numTrustedProxies: IPs or CIDR blocks'),
  notRemoteIpBlocks: strs('negative match of remoteIpBlocks'),
}, 'fields are ANDed; the values of one field ORed');

export const authzOperation = closed({
  hosts: strs('Host / :authority, case-insensitive'),
  notHosts: strs('negative match of hosts'),
  ports: strs('destination (workload) ports, as strings: "8080"'),
  notPorts: strs('negative match of ports'),
  methods: strs('HTTP methods'),
  notMethods: strs('negative match of methods'),
  paths: strs(`paths without the query (${GLOB}; templates "/a/{*}/b", "/a/{**}")`),
  notPaths: strs('negative match of paths'),
}, 'fields are ANDed; the values of one field ORed');

export const authzCondition = closed({
  key: Type.String({ description: 'request.headers[<name>], source.ip, remote.ip, source.namespace, source.principal, request.auth.principal, request.auth.audiences, request.auth.presenter, request.auth.claims[<claim>], destination.ip, destination.port, connection.sni; meshlet refuses any other key' }),
  values: strs('allowed values; at least one of values, notValues'),
  notValues: strs('values that must not match'),
});

export const authzRule = closed({
  from: opt(Type.Array(closed({ source: opt(authzSource) }), { description: 'at least one must match; unset = any source' })),
  to: opt(Type.Array(closed({ operation: opt(authzOperation) }), { description: 'at least one must match; unset = any operation' })),
  when: opt(Type.Array(authzCondition, { description: 'all must match' })),
}, 'matches when one from, one to and every when match; an empty rule always matches');

export const authorizationPolicySpec = closed({
  selector: labels('workloads (by label) in the policy\'s namespace, or in every namespace for the root namespace; unset = all of them'),
  action: opt(Type.Enum(['ALLOW', 'DENY', 'AUDIT', 'CUSTOM'], { description: 'unset = ALLOW. Evaluated CUSTOM, then DENY, then ALLOW; AUDIT only marks' })),
  provider: opt(closed({ name: Type.String() }, 'CUSTOM only: the ext-authz provider (meshlet: an extensionProviders entry of the control/proxy config)')),
  rules: opt(Type.Array(authzRule, { description: 'unset = never matches (ALLOW with no rules denies everything)' })),
});

const MTLS_MODE = Type.Enum(['UNSET', 'DISABLE', 'PERMISSIVE', 'STRICT'], { description: 'UNSET inherits (PERMISSIVE when nothing is set); PERMISSIVE takes mTLS and plaintext; STRICT refuses plaintext' });

export const peerAuthenticationSpec = closed({
  selector: labels('workloads (by label) in the namespace; unset = namespace-wide (mesh-wide in the root namespace)'),
  mtls: opt(closed({ mode: opt(MTLS_MODE) })),
  portLevelMtls: opt(Type.Record(Type.String({ pattern: '^[0-9]+$' }), closed({ mode: opt(MTLS_MODE) }), { description: 'workload port -> mode; needs a selector' })),
});

export const jwtRule = closed({
  issuer: Type.String({ minLength: 1, description: 'the iss claim' }),
  audiences: strs('accepted aud values; unset = any audience'),
  jwksUri: opt(Type.String({ description: 'where the keys are (fetched, cached, refreshed)' })),
  jwks: opt(Type.String({ description: 'the key set inline (JSON text); wins over jwksUri' })),
  fromHeaders: opt(Type.Array(closed({ name: Type.String(), prefix: opt(Type.String()) }), { description: 'unset = Authorization: Bearer <token>' })),
  fromParams: strs('query parameters that may carry the token'),
  forwardOriginalToken: opt(Type.Boolean({ description: 'unset = false: the token header is removed before the app' })),
  outputClaimToHeaders: opt(Type.Array(closed({ header: Type.String(), claim: Type.String() }), { description: 'copy claims to request headers' })),
  outputPayloadToHeader: opt(Type.String({ description: 'a header to carry the payload (base64url JSON)' })),
});

export const requestAuthenticationSpec = closed({
  selector: labels('workloads (by label) in the namespace; unset = all'),
  jwtRules: opt(Type.Array(jwtRule)),
});

/** What a snapshot carries: every policy, each proxy selecting those of its workload. */
export const SecuritySpec = closed({
  rootNamespace: Type.String({ description: "policies here apply to every namespace (Istio's default istio-system)" }),
  authorizationPolicies: Type.Array(closed({ name: Type.String(), namespace: Type.String(), dryRun: opt(Type.Boolean()), spec: authorizationPolicySpec })),
  peerAuthentications: Type.Array(closed({ name: Type.String(), namespace: Type.String(), spec: peerAuthenticationSpec })),
  requestAuthentications: Type.Array(closed({ name: Type.String(), namespace: Type.String(), spec: requestAuthenticationSpec })),
}, 'security.istio.io policies (absent = none)');

export const ClientTlsSpec = closed({
  mode: Type.Enum(['DISABLE', 'SIMPLE', 'MUTUAL', 'ISTIO_MUTUAL']),
  clientCertificate: opt(Type.String({ description: 'MUTUAL: PEM file of the client certificate' })),
  privateKey: opt(Type.String({ description: 'MUTUAL: PEM file of its key' })),
  caCertificates: opt(Type.String({ description: 'PEM file of the CAs to verify the server with; unset = the system roots' })),
  subjectAltNames: strs('accepted server identities; unset = the host name (SIMPLE/MUTUAL) or the endpoint\'s service account (ISTIO_MUTUAL)'),
  sni: opt(Type.String()),
  insecureSkipVerify: opt(Type.Boolean()),
}, 'DestinationRule trafficPolicy.tls');
