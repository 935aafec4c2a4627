// One schema, one validator. The TypeBox definitions (snapshot.schema.ts for the snapshot,
// resources.schema.ts for user resources) are at once the static types, the runtime check and
// the published JSON Schema (docs/schema/). This module runs the check and turns TypeBox's
// errors (a JSON Schema keyword at an instance path) into meshlet's messages: the field path with
// `[i]` and `.field`, what was expected and what came. Two wordings: `resource` for YAML a person
// wrote (it lists the known fields and says what it got), `wire` for a snapshot from a control
// server (a NACK names the field; an unknown field is a newer control server's that this proxy
// would silently ignore).
//
// The happy path runs the checks TypeBox compiled ahead of time (checks.generated.ts, written by
// `npm run schema`): a sidecar never loads the schema builder and compiler (measured on a proxy
// with the realistic bench config: 83 MB RSS and ~430 ms to ready with them at run time, 69 MB and
// ~200 ms without). Only a value that fails loads them (synchronously, once) to say why.
import { createRequire } from 'node:module';
import type { TSchema } from 'typebox';
import type { TLocalizedValidationError } from 'typebox/error';
import { checks } from './checks.generated.ts';
import { regexProblem } from './regex.ts';
import { DURATION_PATTERN } from './duration.ts';

export type Wording = 'resource' | 'wire';
export type SchemaName = keyof typeof checks;

export interface Checker<T> {
  /** True when `value` conforms (the compiled check: run on every snapshot push, every file). */
  check(value: unknown): value is T;
  /** Our messages for a value check() refused, each `<base>.<path>: <message>`. */
  errors(value: unknown, base: string): string[];
  /** The schema itself; loads the schema library (error paths only). */
  schema(): TSchema;
}

interface Library {
  schemas: Record<SchemaName, TSchema>;
  errors(name: SchemaName, value: unknown): TLocalizedValidationError[];
}
let library: Library | undefined;

/** TypeBox and the definitions, loaded on the first value that fails (require: the callers are synchronous). */
function lib(): Library {
  if (library) return library;
  const req = createRequire(import.meta.url);
  const { Compile } = req('typebox/compile') as typeof import('typebox/compile');
  const { Settings } = req('typebox/system') as typeof import('typebox/system');
  // TypeBox buffers 8 errors by default; a person fixing a file wants them all (the snapshot
  // check keeps its own cap of 20). Bounded all the same: a huge bad input must not buffer without end.
  Settings.Set({ maxErrors: 1000 });
  const { Snapshot } = req('./snapshot.schema.ts') as typeof import('./snapshot.schema.ts');
  const { RESOURCE_SCHEMAS } = req('./resources.schema.ts') as typeof import('./resources.schema.ts');
  const schemas: Record<SchemaName, TSchema> = { Snapshot, ...RESOURCE_SCHEMAS };
  const compiled = new Map<SchemaName, ReturnType<typeof Compile>>();
  library = {
    schemas,
    errors: (n, v) => {
      let c = compiled.get(n);
      if (!c) { c = Compile(schemas[n]); compiled.set(n, c); }
      return c.Errors(v);
    },
  };
  return library;
}

/** The checker of one schema of checks.generated.ts, typed by its caller (the Static<> of that schema). */
export function checker<T>(name: SchemaName, wording: Wording): Checker<T> {
  const check = checks[name] as (v: unknown) => boolean;
  return {
    check: (value): value is T => check(value),
    errors: (value, base) => formatErrors(lib().schemas[name], lib().errors(name, value), value, base, wording),
    schema: () => lib().schemas[name],
  };
}

type Node = {
  type?: string; properties?: Record<string, Node>; patternProperties?: Record<string, Node>; items?: Node;
  minimum?: number; maximum?: number; enum?: unknown[]; pattern?: string; minProperties?: number; maxProperties?: number;
};

function kindOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  return typeof v === 'object' ? 'an object' : `${typeof v} ${JSON.stringify(v)}`;
}

const unescape = (seg: string) => seg.replace(/~1/g, '/').replace(/~0/g, '~');

/** The schema node a TypeBox schemaPath (`#/properties/a/items`) points at. */
function schemaAt(root: TSchema, schemaPath: string): Node {
  let n: unknown = root;
  for (const seg of schemaPath.split('/').slice(1)) n = n !== null && typeof n === 'object' ? (n as Record<string, unknown>)[unescape(seg)] : undefined;
  return (n ?? {}) as Node; // never throws: an unexpected path only costs the message its detail
}

/** `/spec/http/0/route` -> `spec.http[0].route`: list indexes in brackets, decided by the value itself. */
function fieldPath(root: unknown, instancePath: string, base: string): { path: string; value: unknown } {
  let path = base;
  let v = root;
  if (instancePath === '') return { path, value: v };
  for (const seg of instancePath.split('/').slice(1)) {
    const k = unescape(seg);
    if (Array.isArray(v)) { path += `[${k}]`; v = v[Number(k)]; }
    else { path += path ? `.${k}` : k; v = (v as Record<string, unknown> | undefined)?.[k]; }
  }
  return { path, value: v };
}

const join = (p: string, k: string) => (p ? `${p}.${k}` : k);

function typeMessage(n: Node, v: unknown, wording: Wording): string {
  const t = n.type;
  if (wording === 'wire') {
    switch (t) {
      case 'integer': return `must be an integer ${n.minimum}..${n.maximum}, got ${JSON.stringify(v)}`;
      case 'number': return `must be a number ${n.minimum}..${n.maximum}, got ${JSON.stringify(v)}`;
      case 'array': return 'must be a list';
      case 'object': return 'must be an object';
      default: return `must be a ${t}`;
    }
  }
  if (t === 'string' && n.pattern === DURATION_PATTERN) return `must be a duration string like "1s" or "250ms", got ${kindOf(v)}`;
  switch (t) {
    case 'boolean': return `must be true or false, got ${kindOf(v)}`;
    case 'integer': return `must be an integer, got ${kindOf(v)}`;
    case 'array': return `must be a list, got ${kindOf(v)}`;
    case 'object': return `must be ${n.patternProperties ? 'a map' : 'an object'}, got ${kindOf(v)}`;
    default: return `must be a ${t}, got ${kindOf(v)}`;
  }
}

function formatErrors(root: TSchema, errs: TLocalizedValidationError[], value: unknown, base: string, wording: Wording): string[] {
  const out: string[] = [];
  const seen = new Set<string>();
  const push = (path: string, message: string) => {
    const line = `${path}: ${message}`;
    if (!seen.has(line)) { seen.add(line); out.push(line); }
  };
  for (const e of errs) {
    const n = schemaAt(root, e.schemaPath);
    const { path, value: v } = fieldPath(value, e.instancePath, base);
    switch (e.keyword) {
      case 'boolean': break; // `additionalProperties: false` per key: reported once per object below
      case 'additionalProperties': {
        const msg = wording === 'wire' ? 'unknown field (this proxy does not understand it)' : `unknown field (known: ${Object.keys(n.properties ?? {}).join(', ')})`;
        for (const k of e.params.additionalProperties) push(join(path, k), msg);
        break;
      }
      case 'required':
        for (const k of e.params.requiredProperties) push(join(path, k), 'is required');
        break;
      case 'type': push(path, typeMessage(n, v, wording)); break;
      case 'minimum': case 'maximum':
        push(path, wording === 'wire' ? typeMessage(n, v, wording) : `must be between ${n.minimum ?? -Infinity} and ${n.maximum ?? Infinity}, got ${v}`);
        break;
      case 'enum':
        push(path, `must be one of ${(n.enum ?? []).join(', ')}${wording === 'wire' ? '' : `, got ${kindOf(v)}`}`);
        break;
      case 'minLength': push(path, 'must not be empty'); break;
      case 'minProperties': case 'maxProperties':
        // The one use: a StringMatch, exactly one of its fields.
        push(path, n.minProperties === 1 && n.maxProperties === 1
          ? `exactly one of ${Object.keys(n.properties ?? {}).join(', ')} is required`
          : e.message);
        break;
      case 'pattern':
        push(path, n.pattern === DURATION_PATTERN ? `invalid duration "${String(v)}" (use e.g. "1s", "250ms", "1m30s")` : `must match ${n.pattern}`);
        break;
      case 'format':
        push(path, e.params.format === 're2' ? `invalid regex: ${regexProblem(String(v))}` : e.message);
        break;
      default: push(path, e.message);
    }
  }
  return out;
}

/**
 * YAML `field:` with no value is null, which users mean as unset (kubectl agrees): drop known
 * fields set to null before the check, so they are neither type errors nor required-field
 * satisfiers. Unknown fields stay (they are errors whatever their value), as do nulls in lists
 * and maps (a list item or map value cannot be "unset").
 */
export function dropNullFields(schema: TSchema, value: unknown): void {
  const n = schema as Node;
  if (Array.isArray(value)) {
    if (n.items) for (const x of value) dropNullFields(n.items as TSchema, x);
    return;
  }
  if (value === null || typeof value !== 'object') return;
  const o = value as Record<string, unknown>;
  if (n.properties) {
    for (const k of Object.keys(o)) {
      if (!Object.hasOwn(n.properties, k)) continue; // unknown (even `constructor`): reported by the check
      const s = n.properties[k];
      if (o[k] === null || o[k] === undefined) delete o[k];
      else dropNullFields(s as TSchema, o[k]);
    }
  } else if (n.patternProperties) {
    const s = Object.values(n.patternProperties)[0];
    for (const k of Object.keys(o)) dropNullFields(s as TSchema, o[k]);
  }
}
