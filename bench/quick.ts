// `npm run bench:quick`: direct vs meshlet (minimal config) through the outbound listener:
// rps and proxy CPU µs per request, in about 15 s. The same harness as `npm run bench`.
import { cpus } from 'node:os';
import { allArms } from './lib/arms.ts';
import { FIXED_CONNECTIONS } from './lib/measure.ts';
import { table } from './lib/output.ts';
import { PLANS, benchArms } from './run.ts';

const plan = { ...PLANS.quick, closedS: 4, fixedS: 3 };
const arms = allArms().filter((a) => a.name === 'direct' || a.name === 'meshlet-minimal');
const { results, tool } = await benchArms(arms, plan);
console.log(`\n${table(results, { node: process.version, cores: cpus().length, tool, qps: plan.qps, fixedConnections: FIXED_CONNECTIONS })}\n`);
const m = results.find((r) => r.arm === 'meshlet-minimal');
if (m?.rps !== undefined) console.log(`meshlet-minimal: ${m.rps.toFixed(0)} rps (×${m.ratio?.toFixed(2)} direct), ${m.cpuUsPerReq?.toFixed(1)} proxy CPU µs/request`);
else console.log(`meshlet-minimal: ${m?.failed ?? m?.skipped ?? 'not run'}`);
