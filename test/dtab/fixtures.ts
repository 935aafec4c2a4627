// Fixture namers of the vectors (docs/spec/dtab.md §5.1): test code only.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { NEG, leaf, parsePath, showPath, type Namer, type Path } from '../../proxy/dtab/index.ts';

// The vectors are copied into the repo (test/dtab/vectors/README.md says from where).
const VECTORS = fileURLToPath(new URL('./vectors/', import.meta.url));
export function loadVectors(name: string): any[] { return JSON.parse(readFileSync(`${VECTORS}${name}`, 'utf8')); }

export function fixtures(v: any): { namers: Array<{ prefix: Path; namer: Namer }>; classpath: Record<string, Namer> } {
  const namers = (v.namers ?? []).map((n: any) => {
    const prefix = parsePath(n.prefix);
    let namer: Namer;
    if (n.kind === 'fs') {
      // io.l5d.fs: the rest binds to prefix/<file> when it starts with a known file, else Neg.
      namer = { lookup: (rest) => { const f = (n.files as string[]).find((x) => rest[0] === x); return f ? leaf({ id: [...prefix, f], residual: rest.slice(1) }) : NEG; } };
    } else if (n.kind === 'error') {
      namer = { lookup: (rest) => { throw new Error(`error naming ${showPath([...prefix, ...rest])}`); } };
    } else if (n.kind === 'test') {
      namer = { lookup: (rest) => (rest[0]?.startsWith('buh') ? NEG : leaf({ id: prefix, residual: rest, addr: null })) };
    } else throw new Error(`unknown fixture namer ${n.kind}`);
    return { prefix, namer };
  });
  const classpath: Record<string, Namer> = {};
  for (const [k, c] of Object.entries(v.classpath ?? {}) as Array<[string, { kind: string; to: string }]>) {
    if (c.kind !== 'rewrite') throw new Error(`unknown classpath fixture ${c.kind}`);
    classpath[k] = { lookup: () => leaf(parsePath(c.to)) };
  }
  return { namers, classpath };
}
