// A small declarative validator for user resources. Every error names the field path, and
// unknown fields are errors (a misspelt field silently ignored is a config that lies).
import { regexProblem } from './regex.ts';

export type Validator<T> = (value: unknown, path: string, ctx: Ctx) => T | undefined;

export class Ctx {
  errors: string[] = [];
  fail(path: string, message: string): undefined {
    this.errors.push(`${path}: ${message}`);
    return undefined;
  }
}

function kindOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  return typeof v === 'object' ? 'an object' : `${typeof v} ${JSON.stringify(v)}`;
}

export const str: Validator<string> = (v, p, c) =>
  typeof v === 'string' ? v : c.fail(p, `must be a string, got ${kindOf(v)}`);

export const nonEmptyStr: Validator<string> = (v, p, c) => {
  const s = str(v, p, c);
  return s === undefined ? undefined : s.length > 0 ? s : c.fail(p, 'must not be empty');
};

export const bool: Validator<boolean> = (v, p, c) =>
  typeof v === 'boolean' ? v : c.fail(p, `must be true or false, got ${kindOf(v)}`);

export function int(min = -Infinity, max = Infinity): Validator<number> {
  return (v, p, c) => {
    if (typeof v !== 'number' || !Number.isInteger(v)) return c.fail(p, `must be an integer, got ${kindOf(v)}`);
    if (v < min || v > max) return c.fail(p, `must be between ${min} and ${max}, got ${v}`);
    return v;
  };
}

export function num(min = -Infinity, max = Infinity): Validator<number> {
  return (v, p, c) => {
    if (typeof v !== 'number' || !Number.isFinite(v)) return c.fail(p, `must be a number, got ${kindOf(v)}`);
    if (v < min || v > max) return c.fail(p, `must be between ${min} and ${max}, got ${v}`);
    return v;
  };
}

const UNIT_MS: Record<string, number> = { h: 3_600_000, m: 60_000, s: 1000, ms: 1, us: 0.001, µs: 0.001, ns: 0.000001 };

/** Go/protobuf duration strings as Istio accepts them: "1s", "0.5s", "100ms", "1m30s", "3m". */
export function parseDuration(s: string): number | undefined {
  const re = /(\d+(?:\.\d+)?|\.\d+)(h|ms|m|s|us|µs|ns)/y;
  let total = 0;
  let i = 0;
  if (s.length === 0) return undefined;
  while (i < s.length) {
    re.lastIndex = i;
    const m = re.exec(s);
    if (!m) return undefined;
    total += Number(m[1]) * UNIT_MS[m[2]];
    i = re.lastIndex;
  }
  return total;
}

export const duration: Validator<number> = (v, p, c) => {
  if (typeof v !== 'string') return c.fail(p, `must be a duration string like "1s" or "250ms", got ${kindOf(v)}`);
  const ms = parseDuration(v.trim());
  return ms === undefined ? c.fail(p, `invalid duration "${v}" (use e.g. "1s", "250ms", "1m30s")`) : ms;
};

export function list<T>(item: Validator<T>): Validator<T[]> {
  return (v, p, c) => {
    if (!Array.isArray(v)) return c.fail(p, `must be a list, got ${kindOf(v)}`);
    const out: T[] = [];
    let ok = true;
    v.forEach((x, i) => {
      const r = item(x, `${p}[${i}]`, c);
      if (r === undefined) ok = false; else out.push(r);
    });
    return ok ? out : undefined;
  };
}

export function map<T>(item: Validator<T>): Validator<Record<string, T>> {
  return (v, p, c) => {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return c.fail(p, `must be a map, got ${kindOf(v)}`);
    const out: Record<string, T> = {};
    let ok = true;
    for (const [k, x] of Object.entries(v)) {
      const r = item(x, `${p}.${k}`, c);
      if (r === undefined) ok = false; else out[k] = r;
    }
    return ok ? out : undefined;
  };
}

export function oneOf<T>(...values: T[]): Validator<T> {
  return (v, p, c) => (values.includes(v as T) ? (v as T) : c.fail(p, `must be one of ${values.join(', ')}, got ${kindOf(v)}`));
}

type Fields = Record<string, Validator<unknown>>;
type Out<F extends Fields> = { [K in keyof F]?: F[K] extends Validator<infer T> ? T : never };

/** An object with known fields; `required` lists fields that must be present. */
export function obj<F extends Fields>(fields: F, required: Array<keyof F & string> = []): Validator<Out<F>> {
  return (v, p, c) => {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return c.fail(p, `must be an object, got ${kindOf(v)}`);
    const out: Record<string, unknown> = {};
    let ok = true;
    for (const [k, x] of Object.entries(v)) {
      const f = fields[k];
      const fp = p ? `${p}.${k}` : k;
      if (!f) {
        c.fail(fp, `unknown field (known: ${Object.keys(fields).join(', ')})`);
        ok = false;
        continue;
      }
      if (x === null || x === undefined) continue; // YAML `field:` with no value = unset
      const r = f(x, fp, c);
      if (r === undefined) ok = false; else out[k] = r;
    }
    for (const r of required) {
      if (out[r] === undefined && ok && (v as Record<string, unknown>)[r] == null) {
        c.fail(p ? `${p}.${r}` : r, 'is required');
        ok = false;
      }
    }
    return ok ? (out as Out<F>) : undefined;
  };
}

/** `v`, then a cross-field check of its result (which reports its own errors and returns false). */
export function refine<T>(v: Validator<T>, check: (value: T, path: string, c: Ctx) => boolean): Validator<T> {
  return (x, p, c) => {
    const r = v(x, p, c);
    return r === undefined ? undefined : check(r, p, c) ? r : undefined;
  };
}

/** An RE2 pattern (Istio StringMatch.regex): errors carry RE2's own message. */
export const regex: Validator<string> = (v, p, c) => {
  const s = str(v, p, c);
  if (s === undefined) return undefined;
  const problem = regexProblem(s);
  return problem === undefined ? s : c.fail(p, `invalid regex: ${problem}`);
};
