// Start example apps, each behind its own meshlet sidecar, all on loopback. Sidecars are real
// `meshlet proxy` child processes; this module only orchestrates them.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const BIN = fileURLToPath(new URL('../../bin/meshlet.js', import.meta.url));

export interface Sidecar { name: string; child: ChildProcess; ports: { outbound: number; inbound: number; admin: number } }

export async function startSidecar(name: string, args: string[], log = false): Promise<Sidecar> {
  const child = spawn(process.execPath, [BIN, 'proxy', '--outbound-port', '0', '--inbound-port', '0', '--admin-port', '0', '--log-level', 'warn', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const ready = new Promise<Sidecar['ports']>((resolve, reject) => {
    const onData = (c: Buffer) => {
      out += c;
      if (log) process.stderr.write(c);
      const line = out.split('\n').find((l) => l.includes('"meshlet proxy ready"'));
      if (line) resolve(JSON.parse(line).ports);
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', (c) => { out += c; process.stderr.write(c); });
    child.once('exit', (code) => reject(new Error(`sidecar ${name} exited ${code}: ${out}`)));
  });
  return { name, child, ports: await ready };
}

export interface ControlProc { child: ChildProcess; ports: { discovery: number; api: number } }

/** `meshlet control` as a child process; resolves with its bound ports. */
export async function startControlProc(configDir: string, ports: { discovery: number; api: number }): Promise<ControlProc> {
  const child = spawn(process.execPath, [BIN, 'control', '--config-dir', configDir, '--port', String(ports.discovery), '--api-port', String(ports.api), '--log-level', 'warn', '--endpoint-ttl', '5'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const bound = await new Promise<ControlProc['ports']>((resolve, reject) => {
    child.stdout!.on('data', (c: Buffer) => {
      out += c;
      const line = out.split('\n').find((l) => l.includes('"meshlet control ready"'));
      if (line) resolve(JSON.parse(line).ports);
    });
    child.stderr!.on('data', (c) => { out += c; process.stderr.write(c); });
    child.once('exit', (code) => reject(new Error(`control exited ${code}: ${out}`)));
  });
  return { child, ports: bound };
}

export function stopAll(children: ChildProcess[]): void {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
}
