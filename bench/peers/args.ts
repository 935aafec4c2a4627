// Shared by the peer proxies: `--port <n> --upstream <host:port>`; prints {"port": n} when listening.
export function peerArgs(): { port: number; upstream: { host: string; port: number } } {
  const a = new Map<string, string>();
  for (let i = 2; i < process.argv.length; i += 2) a.set(process.argv[i].replace(/^--/, ''), process.argv[i + 1]);
  const [host, port] = (a.get('upstream') ?? '127.0.0.1:8080').split(':');
  return { port: Number(a.get('port') ?? 0), upstream: { host, port: Number(port) } };
}

export function announce(server: { address(): unknown }): void {
  process.stdout.write(`${JSON.stringify({ port: (server.address() as { port: number }).port })}\n`);
}
