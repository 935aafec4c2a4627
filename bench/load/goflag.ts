// Go's `flag` package semantics, so fortio command lines parse exactly as fortio parses them:
// `-flag` and `--flag` are the same; `-flag=value` or `-flag value` (not for bools: a bool
// takes a value only with `=`, so `-keepalive false` is `-keepalive` then the argument `false`);
// parsing stops at the first non-flag argument (`-` is one) or after `--`; an unknown flag is
// "flag provided but not defined: -x" and exit 2 (flag.ExitOnError), as is a bad value.

export type GoKind = 'bool' | 'string' | 'int' | 'float' | 'duration' | 'list';
export type GoValue = boolean | string | number | string[];

export interface GoFlag {
  name: string;
  kind: GoKind;
  /** The default value (durations in ms); `undefined` = Go's zero value for the kind. */
  def?: GoValue;
  help: string;
  /** Extra check of a value (Go's flag.Value Set error), returns an error text or null. */
  check?: (v: string) => string | null;
}

/** A parse failure Go's flag package would exit 2 on (message as Go prints it). */
export class GoFlagError extends Error {}
/** `-h` / `-help` when not defined: Go prints the usage and exits 0. */
export class GoFlagHelp extends Error {}

export interface GoParsed {
  values: Map<string, GoValue>;
  /** Flags given on the command line (flag.Visit). */
  set: Set<string>;
  /** What is left after the flags (flag.Args()). */
  args: string[];
}

/** strconv.ParseBool. */
export function parseGoBool(s: string): boolean | undefined {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(s)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(s)) return false;
  return undefined;
}

/** strconv.ParseInt(s, 0, 64): decimal, 0x / 0o / 0b / leading-0 octal, `_` between digits. */
export function parseGoInt(s: string): number | undefined {
  const m = /^([+-]?)(0[xX][0-9a-fA-F_]+|0[bB][01_]+|0[oO][0-7_]+|0[0-7_]*|[1-9][0-9_]*)$/.exec(s);
  if (!m) return undefined;
  let body = m[2];
  if (body.includes('_')) {
    // Underscores only between digits (after a base prefix allowed), as Go's underscoreOK.
    if (/__|_$/.test(body)) return undefined;
    body = body.replace(/_/g, '');
  }
  let v: number;
  if (/^0[xX]/.test(body)) v = parseInt(body.slice(2), 16);
  else if (/^0[bB]/.test(body)) v = parseInt(body.slice(2), 2);
  else if (/^0[oO]/.test(body)) v = parseInt(body.slice(2), 8);
  else if (body.length > 1 && body[0] === '0') v = parseInt(body.slice(1), 8);
  else v = parseInt(body, 10);
  if (!Number.isFinite(v) || Number.isNaN(v)) return undefined;
  return m[1] === '-' ? -v : v;
}

/** strconv.ParseFloat(s, 64) (decimal and Inf/NaN spellings; hex floats are rare enough to refuse). */
export function parseGoFloat(s: string): number | undefined {
  if (/^[+-]?(inf|infinity)$/i.test(s)) return s.startsWith('-') ? -Infinity : Infinity;
  if (/^nan$/i.test(s)) return NaN;
  if (!/^[+-]?(\d[\d_]*(\.[\d_]*)?|\.\d[\d_]*)([eE][+-]?\d+)?$/.test(s)) return undefined;
  return Number(s.replace(/_/g, ''));
}

const UNIT_NS: Record<string, number> = { ns: 1, us: 1e3, 'µs': 1e3, 'μs': 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 };

/** time.ParseDuration, in milliseconds: "300ms", "-1.5h", "2h45m", "0" (a bare number is only valid as 0). */
export function parseGoDuration(s: string): number | undefined {
  let i = 0;
  let neg = false;
  if (s[0] === '-' || s[0] === '+') { neg = s[0] === '-'; i = 1; }
  const rest = s.slice(i);
  if (rest === '0') return 0;
  if (rest === '') return undefined;
  const re = /(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)/y;
  let ns = 0;
  let j = 0;
  while (j < rest.length) {
    re.lastIndex = j;
    const m = re.exec(rest);
    if (!m) return undefined;
    ns += Number(m[1]) * UNIT_NS[m[2]];
    j = re.lastIndex;
  }
  return (neg ? -ns : ns) / 1e6;
}

function convert(f: GoFlag, raw: string): GoValue | undefined {
  switch (f.kind) {
    case 'bool': return parseGoBool(raw);
    case 'int': return parseGoInt(raw);
    case 'float': return parseGoFloat(raw);
    case 'duration': return parseGoDuration(raw);
    default: return raw;
  }
}

/** flag.FlagSet.Parse for `flags`, with flag.ExitOnError's messages. */
export function parseGoFlags(argv: string[], flags: readonly GoFlag[]): GoParsed {
  const byName = new Map(flags.map((f) => [f.name, f]));
  const values = new Map<string, GoValue>();
  for (const f of flags) {
    if (f.kind === 'list') values.set(f.name, []);
    else if (f.def !== undefined) values.set(f.name, f.def);
    else values.set(f.name, f.kind === 'bool' ? false : f.kind === 'string' ? '' : 0);
  }
  const set = new Set<string>();
  let i = 0;
  for (; i < argv.length; i++) {
    const s = argv[i];
    if (s.length < 2 || s[0] !== '-') break; // first non-flag argument ("-" included)
    let numMinuses = 1;
    if (s[1] === '-') {
      numMinuses = 2;
      if (s.length === 2) { i++; break; } // "--" terminates the flags
    }
    let name = s.slice(numMinuses);
    if (name.length === 0 || name[0] === '-' || name[0] === '=') throw new GoFlagError(`bad flag syntax: ${s}`);
    let value: string | undefined;
    const eq = name.indexOf('=');
    if (eq >= 1) { value = name.slice(eq + 1); name = name.slice(0, eq); }
    const f = byName.get(name);
    if (!f) {
      if (name === 'help' || name === 'h') throw new GoFlagHelp('help requested');
      throw new GoFlagError(`flag provided but not defined: -${name}`);
    }
    if (f.kind === 'bool') {
      if (value === undefined) { values.set(name, true); set.add(name); continue; }
      const b = parseGoBool(value);
      if (b === undefined) throw new GoFlagError(`invalid boolean value "${value}" for -${name}: parse error`);
      values.set(name, b); set.add(name);
      continue;
    }
    if (value === undefined) {
      if (i + 1 >= argv.length) throw new GoFlagError(`flag needs an argument: -${name}`);
      value = argv[++i];
    }
    const v = convert(f, value);
    if (v === undefined) throw new GoFlagError(`invalid value "${value}" for flag -${name}: parse error`);
    const bad = f.check?.(value);
    if (bad) throw new GoFlagError(`invalid value "${value}" for flag -${name}: ${bad}`);
    if (f.kind === 'list') (values.get(name) as string[]).push(value);
    else values.set(name, v);
    set.add(name);
  }
  return { values, set, args: argv.slice(i) };
}

/** flag.PrintDefaults' layout: "  -name type\n    \thelp (default x)". */
export function goUsage<F extends GoFlag>(flags: readonly F[], note?: (f: F) => string | undefined): string {
  const lines: string[] = [];
  for (const f of [...flags].sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const type = f.kind === 'bool' ? '' : f.kind === 'list' ? ' value' : ` ${f.kind}`;
    let def = '';
    if (f.def !== undefined && f.def !== false && f.def !== '' && f.def !== 0) {
      def = f.kind === 'string' ? ` (default "${f.def}")` : f.kind === 'duration' ? ` (default ${goDurationMs(f.def as number)})` : ` (default ${String(f.def)})`;
    }
    const extra = note?.(f);
    lines.push(`  -${f.name}${type}\n    \t${f.help}${def}${extra ? ` [meshlet: ${extra}]` : ''}`);
  }
  return `${lines.join('\n')}\n`;
}

/** time.Duration.String() of a duration given in ms. */
export function goDurationMs(ms: number): string { return goDurationNs(Math.round(ms * 1e6)); }

/** time.Duration.String() of integer nanoseconds: "0s", "1.5µs", "244.580605ms", "5s", "1m0s", "1h2m3.5s". */
export function goDurationNs(ns: number): string {
  if (ns === 0) return '0s';
  const neg = ns < 0;
  let u = Math.abs(Math.round(ns));
  const trim = (int: number, frac: number, digits: number) => {
    let f = frac > 0 ? String(frac).padStart(digits, '0').replace(/0+$/, '') : '';
    if (f) f = `.${f}`;
    return `${int}${f}`;
  };
  let out: string;
  if (u < 1e9) {
    if (u < 1e3) out = `${u}ns`;
    else if (u < 1e6) out = `${trim(Math.floor(u / 1e3), u % 1e3, 3)}µs`;
    else out = `${trim(Math.floor(u / 1e6), u % 1e6, 6)}ms`;
  } else {
    const h = Math.floor(u / 3600e9); u -= h * 3600e9;
    const m = Math.floor(u / 60e9); u -= m * 60e9;
    const s = `${trim(Math.floor(u / 1e9), u % 1e9, 9)}s`;
    out = h > 0 ? `${h}h${m}m${s}` : m > 0 ? `${m}m${s}` : s;
  }
  return neg ? `-${out}` : out;
}
