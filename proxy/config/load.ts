// Load resources from a file or a directory of *.yaml / *.yml files into a Snapshot.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { compile } from './compile.ts';
import { ConfigError, parseResourceText, type Resource } from './resources.ts';
import type { Snapshot } from './schema.ts';

export function listConfigFiles(path: string): string[] {
  const st = statSync(path);
  if (!st.isDirectory()) return [path];
  // Sorted, and hidden files skipped: editors and `git checkout` write temporaries there.
  return readdirSync(path)
    .filter((f) => /\.ya?ml$/.test(f) && !f.startsWith('.'))
    .sort()
    .map((f) => join(path, f));
}

export function readResources(path: string): Resource[] {
  const errors: string[] = [];
  let files: string[];
  try {
    files = listConfigFiles(path);
  } catch (e) {
    throw new ConfigError([`${path}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file or directory' : (e as Error).message}`]);
  }
  const out: Resource[] = [];
  for (const f of files) out.push(...parseResourceText(f, readFileSync(f, 'utf8'), errors));
  if (errors.length > 0) throw new ConfigError(errors);
  return out;
}

export function loadSnapshot(path: string, version: string): Snapshot {
  return compile(readResources(path), { version, source: `file:${resolve(path)}` });
}
