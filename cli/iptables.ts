// `meshlet iptables`: the init step of an injected pod (container meshlet-init, the only one with
// NET_ADMIN). It writes the NAT rules that send the pod's TCP through the sidecar, as Istio's
// istio-iptables does (its golden files: tools/istio-iptables/pkg/capture/testdata), with
// meshlet's chain names:
//
//   PREROUTING -p tcp -> MESHLET_INBOUND: the app's inbound ports -> MESHLET_IN_REDIRECT (-> 15006)
//   OUTPUT     -p tcp -> MESHLET_OUTPUT:
//     excluded ports / CIDRs                               RETURN
//     -o lo -s 127.0.0.6                                   RETURN (inbound passthrough source)
//     -o lo ! -d 127.0.0.1, owner uid 1337                 MESHLET_IN_REDIRECT (the sidecar calling its own pod IP)
//     -o lo, owner not uid 1337                            RETURN (the app calling itself over loopback)
//     owner uid 1337                                       RETURN (the sidecar's own traffic)
//     (the same three for gid 1337)
//     -d 127.0.0.1                                         RETURN
//     everything else                                      MESHLET_REDIRECT (-> 15001)
//
// One iptables-restore transaction (--noflush: other tables and chains are left alone), so a
// pod never runs with half its rules. --dry-run prints that input instead of applying it.
// Rerunning is safe: our chains are redeclared (flushed) and the jumps to them added once.
import { execFileSync, spawnSync } from 'node:child_process';
import { isIP } from 'node:net';
import { FlagError, helpText, parseFlags, type FlagSpec } from './flags.ts';

export interface CaptureOptions {
  proxyUid: number;
  proxyGid: number;
  outboundPort: number;
  inboundPort: number;
  /** Inbound ports captured: a list, or '*' for every port but the excluded ones. Empty = no inbound capture. */
  inboundPorts: number[] | '*';
  excludeInboundPorts: number[];
  excludeOutboundPorts: number[];
  excludeOutboundCidrs: string[];
  /** Only these CIDRs are captured outbound ('*' = all). */
  includeOutboundCidrs: string[] | '*';
}

/** The sidecar's own ports: never captured inbound (admin, outbound, inbound, health). */
const OWN_PORTS = [15000, 15001, 15006, 15021];

const SPECS: FlagSpec[] = [
  { name: 'proxy-uid', type: 'number', default: 1337, help: 'UID the sidecar runs as: its traffic is not captured' },
  { name: 'proxy-gid', type: 'number', default: 1337, help: 'GID the sidecar runs as: its traffic is not captured' },
  { name: 'outbound-port', type: 'number', default: 15001, help: 'the sidecar outbound listener: captured outbound TCP goes here' },
  { name: 'inbound-port', type: 'number', default: 15006, help: 'the sidecar inbound listener: captured inbound TCP goes here' },
  { name: 'inbound-ports', type: 'string', default: '*', help: "inbound ports to capture, comma-separated, '*' = all but the excluded, '' = none" },
  { name: 'exclude-inbound-ports', type: 'string', default: '', help: 'inbound ports never captured (the sidecar ports 15000,15001,15006,15021 always are not)' },
  { name: 'exclude-outbound-ports', type: 'string', default: '', help: 'outbound destination ports never captured (e.g. a server-first protocol such as 3306)' },
  { name: 'exclude-outbound-cidrs', type: 'string', default: '', help: 'outbound destination CIDRs never captured' },
  { name: 'include-outbound-cidrs', type: 'string', default: '*', help: "outbound CIDRs captured ('*' = all)" },
  { name: 'dry-run', type: 'boolean', default: false, help: 'print the iptables-restore input and change nothing' },
];

function ports(flag: string, s: string): number[] {
  if (s.trim() === '') return [];
  return s.split(',').map((x) => x.trim()).filter(Boolean).map((x) => {
    const n = Number(x);
    if (!Number.isInteger(n) || n < 1 || n > 65535) throw new FlagError(`--${flag}: '${x}' is not a port (1-65535)`);
    return n;
  });
}

function cidrs(flag: string, s: string): string[] {
  if (s.trim() === '') return [];
  return s.split(',').map((x) => x.trim()).filter(Boolean).map((x) => {
    const [ip, len, ...rest] = x.split('/');
    const v = isIP(ip);
    const max = v === 6 ? 128 : 32;
    const n = len === undefined ? max : Number(len);
    if (v === 0 || rest.length > 0 || !Number.isInteger(n) || n < 0 || n > max) throw new FlagError(`--${flag}: '${x}' is not a CIDR`);
    if (v === 6) throw new FlagError(`--${flag}: '${x}': IPv6 capture is not implemented (ip6tables); only IPv4 CIDRs`);
    return `${ip}/${n}`;
  });
}

export function captureOptions(f: Record<string, unknown>): CaptureOptions {
  const inbound = String(f['inbound-ports']).trim();
  const include = String(f['include-outbound-cidrs']).trim();
  const id = (name: string) => {
    const n = f[name] as number;
    if (!Number.isInteger(n) || n < 0) throw new FlagError(`--${name}: must be a whole number >= 0`);
    return n;
  };
  const port = (name: string) => { const n = id(name); if (n < 1 || n > 65535) throw new FlagError(`--${name}: must be a port`); return n; };
  return {
    proxyUid: id('proxy-uid'), proxyGid: id('proxy-gid'), outboundPort: port('outbound-port'), inboundPort: port('inbound-port'),
    inboundPorts: inbound === '*' ? '*' : ports('inbound-ports', inbound),
    excludeInboundPorts: ports('exclude-inbound-ports', String(f['exclude-inbound-ports'])),
    excludeOutboundPorts: ports('exclude-outbound-ports', String(f['exclude-outbound-ports'])),
    excludeOutboundCidrs: cidrs('exclude-outbound-cidrs', String(f['exclude-outbound-cidrs'])),
    includeOutboundCidrs: include === '*' ? '*' : cidrs('include-outbound-cidrs', include),
  };
}

/** The iptables-restore input for the nat table. `jumpsPresent`: the PREROUTING/OUTPUT jumps exist already. */
export function natRules(o: CaptureOptions, jumpsPresent = false): string {
  const L: string[] = ['*nat'];
  for (const c of ['MESHLET_INBOUND', 'MESHLET_REDIRECT', 'MESHLET_IN_REDIRECT', 'MESHLET_OUTPUT']) L.push(`:${c} - [0:0]`);
  L.push(`-A MESHLET_REDIRECT -p tcp -j REDIRECT --to-ports ${o.outboundPort}`);
  L.push(`-A MESHLET_IN_REDIRECT -p tcp -j REDIRECT --to-ports ${o.inboundPort}`);
  // Inbound.
  const excludedIn = [...new Set([...OWN_PORTS, o.outboundPort, o.inboundPort, ...o.excludeInboundPorts])];
  if (o.inboundPorts === '*') {
    for (const p of excludedIn) L.push(`-A MESHLET_INBOUND -p tcp --dport ${p} -j RETURN`);
    L.push('-A MESHLET_INBOUND -p tcp -j MESHLET_IN_REDIRECT');
  } else {
    for (const p of o.inboundPorts) if (!excludedIn.includes(p)) L.push(`-A MESHLET_INBOUND -p tcp --dport ${p} -j MESHLET_IN_REDIRECT`);
  }
  // Outbound.
  for (const p of o.excludeOutboundPorts) L.push(`-A MESHLET_OUTPUT -p tcp --dport ${p} -j RETURN`);
  L.push('-A MESHLET_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN');
  for (const [flag, id] of [['--uid-owner', o.proxyUid], ['--gid-owner', o.proxyGid]] as const) {
    L.push(`-A MESHLET_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp -m owner ${flag} ${id} -j MESHLET_IN_REDIRECT`);
    L.push(`-A MESHLET_OUTPUT -o lo -m owner ! ${flag} ${id} -j RETURN`);
    L.push(`-A MESHLET_OUTPUT -m owner ${flag} ${id} -j RETURN`);
  }
  L.push('-A MESHLET_OUTPUT -d 127.0.0.1/32 -j RETURN');
  for (const c of o.excludeOutboundCidrs) L.push(`-A MESHLET_OUTPUT -d ${c} -j RETURN`);
  if (o.includeOutboundCidrs === '*') L.push('-A MESHLET_OUTPUT -j MESHLET_REDIRECT');
  else for (const c of o.includeOutboundCidrs) L.push(`-A MESHLET_OUTPUT -d ${c} -j MESHLET_REDIRECT`);
  if (!jumpsPresent) {
    L.push('-A PREROUTING -p tcp -j MESHLET_INBOUND');
    L.push('-A OUTPUT -p tcp -j MESHLET_OUTPUT');
  }
  L.push('COMMIT', '');
  return L.join('\n');
}

export async function main(argv: string[]): Promise<number | undefined> {
  let p;
  try { p = parseFlags(argv, SPECS); } catch (e) { console.error(`meshlet iptables: ${(e as Error).message}`); return 2; }
  if (p.help) { console.log(helpText('meshlet iptables [flags] [--dry-run]', "Write the pod's NAT rules: outbound TCP to the sidecar's 15001, inbound to 15006, the sidecar's own traffic exempt (the init step of an injected pod; needs NET_ADMIN).", SPECS)); return 0; }
  let o: CaptureOptions;
  try { o = captureOptions(p.flags); } catch (e) { console.error(`meshlet iptables: ${(e as Error).message}`); return 2; }
  if (p.flags['dry-run']) { process.stdout.write(natRules(o)); return 0; }
  let present = false;
  const save = spawnSync('iptables-save', ['-t', 'nat'], { encoding: 'utf8' });
  if (save.error) { console.error(`meshlet iptables: iptables-save: ${save.error.message} (is iptables installed in this image?)`); return 1; }
  if (save.status === 0) present = /-A OUTPUT -p tcp -j MESHLET_OUTPUT/.test(save.stdout) && /-A PREROUTING -p tcp -j MESHLET_INBOUND/.test(save.stdout);
  const rules = natRules(o, present);
  try {
    execFileSync('iptables-restore', ['--noflush'], { input: rules, stdio: ['pipe', 'inherit', 'pipe'] });
  } catch (e) {
    const err = (e as { stderr?: Buffer }).stderr?.toString().trim() || (e as Error).message;
    console.error(`meshlet iptables: iptables-restore failed: ${err}\n(the init container needs the NET_ADMIN and NET_RAW capabilities)\n--- rules ---\n${rules}`);
    return 1;
  }
  process.stdout.write(`${JSON.stringify({ level: 30, time: new Date().toISOString(), msg: 'meshlet iptables: rules applied', rules: rules.split('\n').filter((l) => l.startsWith('-A')).length, reran: present })}\n`);
  return 0;
}
