// meshlet <command>: one CLI, each subcommand in the module that owns the feature.
// Modules load lazily so `meshlet dtab show` does not pay for the proxy's dependencies.

type Main = (argv: string[]) => Promise<number | undefined>;

const COMMANDS: Record<string, { about: string; load: () => Promise<{ main: Main }> }> = {
  proxy: { about: 'run the sidecar proxy (outbound, inbound and admin listeners)', load: () => import('./proxy.ts') },
  control: { about: 'run the control server (snapshots, discovery, ops API)', load: () => import('../control/cli.ts') },
  load: { about: 'fortio-compatible load generator', load: () => import('../bench/load/cli.ts') },
  curl: { about: 'send one request and print status, headers and body', load: () => import('../bench/load/curl.ts') },
  dtab: { about: 'show, resolve and delegate dtabs (Finagle syntax)', load: () => import('../proxy/dtab/cli.ts') },
  ctl: { about: 'operate a running control server (weights, promote, rollback, ...)', load: () => import('../control/ctl.ts') },
  inject: { about: 'add the meshlet sidecar (and its iptables init step) to Kubernetes manifests', load: () => import('../control/inject.ts') },
  iptables: { about: "write a pod's NAT rules sending its TCP through the sidecar (--dry-run prints them)", load: () => import('./iptables.ts') },
  install: { about: 'print the Kubernetes manifests that install meshlet (meshlet install | kubectl apply -f -)', load: () => import('../control/kubernetes/install.ts') },
};

export function usage(): string {
  const lines = ['usage: meshlet <command> [flags]', '', 'commands:'];
  for (const [name, c] of Object.entries(COMMANDS)) lines.push(`  ${name.padEnd(8)} ${c.about}`);
  lines.push('', "run 'meshlet <command> --help' for a command's flags");
  return lines.join('\n');
}

export async function main(argv: string[]): Promise<number | undefined> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    console.log(usage());
    return cmd ? 0 : 2;
  }
  const entry = COMMANDS[cmd];
  if (!entry) {
    console.error(`meshlet: unknown command '${cmd}'\n\n${usage()}`);
    return 2;
  }
  const mod = await entry.load();
  return mod.main(rest);
}
