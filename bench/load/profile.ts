// -profile <file>: fortio writes Go's <file>.cpu and <file>.mem; meshlet writes V8's
// equivalents: <file>.cpu is a .cpuprofile (open it in Chrome DevTools), <file>.mem a heap snapshot.
import { Session } from 'node:inspector';
import { writeFileSync } from 'node:fs';
import { writeHeapSnapshot } from 'node:v8';

export function startProfile(file: string): () => Promise<void> {
  const s = new Session();
  s.connect();
  const post = (m: string, p?: object) => new Promise<unknown>((res, rej) => s.post(m, p ?? {}, (e, r) => (e ? rej(e) : res(r))));
  const started = post('Profiler.enable').then(() => post('Profiler.start'));
  return async () => {
    await started;
    const r = await post('Profiler.stop') as { profile: unknown };
    writeFileSync(`${file}.cpu`, JSON.stringify(r.profile));
    s.disconnect();
    writeHeapSnapshot(`${file}.mem`);
  };
}
