// Micro-benchmark: one AuthorizationPolicy decision for a workload with 100 policies (the
// evaluator the inbound filter runs, proxy/filters/authz/policy.ts), in µs per decision:
//   - worst case: 99 ALLOW policies that do not match, the 100th matches at its last rule;
//   - a DENY list of 100 that do not match, then an ALLOW that does;
//   - denied: nothing matches (every policy evaluated).
// Run alone: `npx node bench/security/authz-decision.ts [--ms 400]`.
import { WorkloadAuthz, type AuthzAttributes, type AuthzPolicyEntry } from '../../proxy/filters/authz/policy.ts';

const ms = Number(process.argv[process.argv.indexOf('--ms') + 1] || 400) || 400;

function policy(i: number, action: 'ALLOW' | 'DENY'): AuthzPolicyEntry {
  return {
    name: `p${i}`, namespace: 'demo',
    spec: {
      selector: { matchLabels: { app: 'httpbin' } }, action,
      rules: [
        { from: [{ source: { principals: [`cluster.local/ns/team-${i}/sa/client`] } }], to: [{ operation: { methods: ['GET'], paths: [`/api/v${i}/*`] } }] },
        { from: [{ source: { namespaces: [`ns-${i}`] } }], to: [{ operation: { paths: [`/items/{*}/v${i}`] } }], when: [{ key: 'request.headers[x-team]', values: [`team-${i}*`] }] },
      ],
    },
  };
}

const req: AuthzAttributes = {
  method: 'GET', path: '/api/v99/items', host: 'httpbin.demo', headers: ['x-team', 'team-99', 'user-agent', 'bench'],
  sourceIp: '10.0.0.5', remoteIp: '10.0.0.5', destinationIp: '10.0.1.1', destinationPort: 8000,
  principal: 'cluster.local/ns/team-99/sa/client', sni: null, jwt: null,
};

function time(name: string, w: WorkloadAuthz, a: AuthzAttributes, expect: boolean): string {
  if (w.decide(a).allowed !== expect) throw new Error(`${name}: wrong decision`);
  // CPU time of this process (not wall time): on a shared machine the wall clock counts other
  // processes' turns too.
  const run = (budget: number) => {
    let n = 0; let batch = 1; let el = 0;
    const t0 = process.cpuUsage();
    while (el < budget * 1e3) { for (let i = 0; i < batch; i++) w.decide(a); n += batch; const d = process.cpuUsage(t0); el = d.user + d.system; if (batch < 65536) batch *= 2; }
    return (el * 1000) / n;
  };
  run(ms);
  const ns = run(ms);
  return `| ${name} | ${w.size} | ${(ns / 1000).toFixed(2)} |`;
}

const allow100 = new WorkloadAuthz(Array.from({ length: 100 }, (_, i) => policy(i, 'ALLOW')), 'demo', { app: 'httpbin' });
const deny100 = new WorkloadAuthz([...Array.from({ length: 100 }, (_, i) => policy(i + 1000, 'DENY')), policy(99, 'ALLOW')], 'demo', { app: 'httpbin' });
console.log('| decision | policies | µs/decision |');
console.log('|---|---|---|');
console.log(time('100 ALLOW, the last one matches', allow100, req, true));
console.log(time('100 DENY miss, then an ALLOW matches', deny100, req, true));
console.log(time('100 ALLOW, none matches (deny)', allow100, { ...req, principal: 'cluster.local/ns/x/sa/y', headers: [] }, false));
