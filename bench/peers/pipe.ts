// The byte copy shared by the pipe references (tcp-pipe.ts, tls-pipe.ts): each direction writes
// what it reads and pauses its reader while the writer's buffer is full; either side closing
// closes the other. No HTTP, no parsing: what is left is the cost of Node's sockets themselves.
import type { Socket } from 'node:net';

export function splice(a: Socket, b: Socket): void {
  a.on('data', (d) => { if (!b.write(d)) { a.pause(); b.once('drain', () => a.resume()); } });
  b.on('data', (d) => { if (!a.write(d)) { b.pause(); a.once('drain', () => b.resume()); } });
  a.on('error', () => {});
  b.on('error', () => {});
  a.on('close', () => b.destroy());
  b.on('close', () => a.destroy());
}
