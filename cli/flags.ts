// A small flag parser shared by every subcommand: `--name value`, `--name=value`, `-n value`,
// booleans, repeatable flags. Unknown flags are an error that names the flag (never ignored).

export interface FlagSpec {
  name: string;            // long name without dashes, e.g. 'outbound-port'
  alias?: string[];        // other spellings, e.g. ['c'] for fortio's -c
  type: 'string' | 'number' | 'boolean' | 'list';
  default?: string | number | boolean | string[];
  help: string;
}

export interface Parsed {
  flags: Record<string, string | number | boolean | string[] | undefined>;
  positional: string[];
  help: boolean;
}

export class FlagError extends Error {}

export function parseFlags(argv: string[], specs: FlagSpec[]): Parsed {
  const byName = new Map<string, FlagSpec>();
  for (const s of specs) {
    byName.set(s.name, s);
    for (const a of s.alias ?? []) byName.set(a, s);
  }
  const flags: Parsed['flags'] = {};
  for (const s of specs) flags[s.name] = Array.isArray(s.default) ? [...s.default] : s.default;
  const seenList = new Set<string>();
  const positional: string[] = [];
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--') { positional.push(...argv.slice(i + 1)); break; }
    if (arg === '--help' || arg === '-h') { help = true; continue; }
    if (!arg.startsWith('-') || arg === '-') { positional.push(arg); continue; }
    let name = arg.replace(/^--?/, '');
    let value: string | undefined;
    const eq = name.indexOf('=');
    if (eq >= 0) { value = name.slice(eq + 1); name = name.slice(0, eq); }
    const spec = byName.get(name);
    if (!spec) throw new FlagError(`unknown flag '${arg}'`);
    if (spec.type === 'boolean') {
      flags[spec.name] = value === undefined ? true : !/^(false|0|no)$/i.test(value);
      continue;
    }
    if (value === undefined) {
      if (i + 1 >= argv.length) throw new FlagError(`flag '${arg}' needs a value`);
      value = argv[++i];
    }
    if (spec.type === 'number') {
      const n = Number(value);
      if (value.trim() === '' || !Number.isFinite(n)) throw new FlagError(`flag '${arg}' needs a number, got '${value}'`);
      flags[spec.name] = n;
    } else if (spec.type === 'list') {
      // A repeated list flag replaces the default on first use, then appends.
      if (!seenList.has(spec.name)) { flags[spec.name] = []; seenList.add(spec.name); }
      (flags[spec.name] as string[]).push(value);
    } else {
      flags[spec.name] = value;
    }
  }
  return { flags, positional, help };
}

export function helpText(usageLine: string, about: string, specs: FlagSpec[]): string {
  const lines = [`usage: ${usageLine}`, '', about, '', 'flags:'];
  for (const s of specs) {
    const names = [`--${s.name}`, ...(s.alias ?? []).map((a) => (a.length === 1 ? `-${a}` : `-${a}`))].join(', ');
    const def = s.default === undefined || (Array.isArray(s.default) && s.default.length === 0) ? '' : ` (default ${JSON.stringify(s.default)})`;
    lines.push(`  ${names.padEnd(30)} ${s.help}${def}`);
  }
  return lines.join('\n');
}
