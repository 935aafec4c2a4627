// `npm run bench:quick`: direct vs meshlet (minimal config) through the outbound listener:
// rps and proxy CPU µs per request, in about 15 s.
import { cpus } from 'node:os';
import { allArms } from './lib/arms.ts';
import { table } from './lib/output.ts';
import { PLANS, benchArms } from './run.ts';

const arms = allArms().filter((a) => a.name === 'direct' || a.name === 'meshlet-minimal');
const { results, tool } = await benchArms(arms, { ...PLANS.quick, closedS: 4, fixedS: 3 });
console.log(`\n${table(results, { node: process.version, cores: cpus().length, tool, qps: PLANS.quick.qps })}\n`);
