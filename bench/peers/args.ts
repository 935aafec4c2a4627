// Shared by the peer proxies: `--port <n> --upstream <host:port>` and any other `--key value`
// pairs (in `extra`); prints {"port": n} when listening.
//
// `--warm` exits as soon as the peer's modules are loaded: with NODE_COMPILE_CACHE set, that
// fills Node's compile cache, so the measured start does not load the TypeScript stripper (which
// would add ~20 MB to the peer's RSS and make the references look heavier than they are).
export function peerArgs(): { port: number; upstream: { host: string; port: number }; extra: Map<string, string> } {
  if (process.argv.includes('--warm')) process.exit(0);
  const a = new Map<string, string>();
  for (let i = 2; i < process.argv.length; i += 2) a.set(process.argv[i].replace(/^--/, ''), process.argv[i + 1]);
  const [host, port] = (a.get('upstream') ?? '127.0.0.1:8080').split(':');
  return { port: Number(a.get('port') ?? 0), upstream: { host, port: Number(port) }, extra: a };
}

export function announce(server: { address(): unknown }): void {
  process.stdout.write(`${JSON.stringify({ port: (server.address() as { port: number }).port })}\n`);
}
