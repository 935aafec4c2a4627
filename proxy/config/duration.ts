// Go/protobuf duration strings, as Istio's YAML writes them: the grammar (a JSON Schema pattern
// for resources.schema.ts, so editors check it too) and the conversion compile.ts applies.

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

/**
 * The same grammar as parseDuration, as a JSON Schema pattern (so an editor checks it too);
 * surrounding blanks are allowed, as they always were. `durationMs` converts a checked string.
 */
export const DURATION_PATTERN = '^\\s*((\\d+(\\.\\d+)?|\\.\\d+)(h|ms|m|s|us|µs|ns))+\\s*$';

/** Milliseconds of a duration string the schema already accepted. */
export function durationMs(s: string): number {
  const ms = parseDuration(s.trim());
  if (ms === undefined) throw new Error(`unchecked duration ${JSON.stringify(s)}`); // the schema's pattern admits only parseable strings
  return ms;
}
