// The -json result against a strict decoder of fortio's fhttp.HTTPRunnerResults, written here
// from fortio's struct definitions (periodic.RunnerResults, fhttp.HTTPOptions, stats.HistogramData;
// field list in the meshlet spec notes on fortio, section 1.4): like Go's json.Decoder with
// DisallowUnknownFields it refuses unknown fields and wrong types; it also wants every field
// fortio writes, in its struct order (json.MarshalIndent), and the re-encoding must round-trip.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startUpstream, type Upstream } from '../helpers.ts';
import { run } from './lib.ts';

type T = 'string' | 'int' | 'float' | 'bool' | 'time' | 'hist' | 'codes' | 'ipmap' | 'ints' | 'pair' | 'bytes';
const HTTP_RUNNER_RESULTS: Array<[string, T]> = [
  // periodic.RunnerResults
  ['RunType', 'string'], ['Labels', 'string'], ['StartTime', 'time'], ['RequestedQPS', 'string'], ['RequestedDuration', 'string'],
  ['ActualQPS', 'float'], ['ActualDuration', 'int'], ['NumThreads', 'int'], ['Version', 'string'],
  ['DurationHistogram', 'hist'], ['ErrorsDurationHistogram', 'hist'],
  ['Exactly', 'int'], ['Jitter', 'bool'], ['Uniform', 'bool'], ['NoCatchUp', 'bool'], ['RunID', 'int'],
  ['AccessLoggerInfo', 'string'], ['ID', 'string'],
  // fhttp.HTTPRunnerResults
  ['RetCodes', 'codes'], ['IPCountMap', 'ipmap'],
  // fhttp.HTTPOptions (embedded)
  ['Insecure', 'bool'], ['MTLS', 'bool'], ['CACert', 'string'], ['Cert', 'string'], ['Key', 'string'], ['UnixDomainSocket', 'string'],
  ['URL', 'string'], ['NumConnections', 'int'], ['Compression', 'bool'], ['DisableFastClient', 'bool'], ['HTTP10', 'bool'], ['H2', 'bool'],
  ['DisableKeepAlive', 'bool'], ['AllowHalfClose', 'bool'], ['FollowRedirects', 'bool'], ['Resolve', 'string'], ['HTTPReqTimeOut', 'int'],
  ['UserCredentials', 'string'], ['ContentType', 'string'], ['Payload', 'bytes'], ['MethodOverride', 'string'], ['LogErrors', 'bool'],
  ['SequentialWarmup', 'bool'], ['ConnReuseRange', 'pair'], ['NoResolveEachConn', 'bool'], ['Offset', 'int'], ['Resolution', 'float'],
  ['Sizes', 'hist'], ['HeaderSizes', 'hist'], ['Sockets', 'ints'], ['SocketCount', 'int'], ['ConnectionStats', 'hist'], ['AbortOn', 'int'],
];
const HIST: Array<[string, T | 'buckets' | 'percentiles']> = [['Count', 'int'], ['Min', 'float'], ['Max', 'float'], ['Sum', 'float'], ['Avg', 'float'], ['StdDev', 'float'], ['Data', 'buckets'], ['Percentiles', 'percentiles']];

class DecodeError extends Error {}
const isInt = (v: unknown) => typeof v === 'number' && Number.isInteger(v);

function decodeValue(path: string, t: string, v: unknown): unknown {
  const fail = (why: string) => { throw new DecodeError(`json: cannot unmarshal ${JSON.stringify(v)} into ${path} (${t}): ${why}`); };
  switch (t) {
    case 'string': if (typeof v !== 'string') fail('not a string'); return v;
    case 'int': if (!isInt(v)) fail('not an integer'); return v;
    case 'float': if (typeof v !== 'number') fail('not a number'); return v;
    case 'bool': if (typeof v !== 'boolean') fail('not a bool'); return v;
    case 'time': if (typeof v !== 'string' || !/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$/.test(v)) fail('not RFC 3339'); return v;
    case 'bytes': if (v !== null && (typeof v !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(v))) fail('not base64'); return v;
    case 'ints': if (v !== null && (!Array.isArray(v) || !v.every(isInt))) fail('not []int64'); return v;
    case 'pair': if (!Array.isArray(v) || v.length !== 2 || !v.every(isInt)) fail('not [2]int'); return v;
    case 'codes': // map[int]int64: keys are decimal ints as strings
      if (typeof v !== 'object' || v === null || Array.isArray(v)) fail('not a map');
      for (const [k, n] of Object.entries(v as object)) { if (!/^-?\d+$/.test(k)) fail(`key ${k} not an int`); if (!isInt(n)) fail('count not int'); }
      return v;
    case 'ipmap':
      if (typeof v !== 'object' || v === null || Array.isArray(v)) fail('not a map');
      for (const n of Object.values(v as object)) if (!isInt(n)) fail('count not int');
      return v;
    case 'hist': return decodeStruct(path, HIST, v, ['Percentiles']);
    case 'buckets':
      if (v === null) return v;
      if (!Array.isArray(v)) fail('not a slice');
      return (v as unknown[]).map((b, i) => decodeStruct(`${path}[${i}]`, [['Start', 'float'], ['End', 'float'], ['Percent', 'float'], ['Count', 'int']], b));
    case 'percentiles':
      if (!Array.isArray(v)) fail('not a slice');
      return (v as unknown[]).map((p, i) => decodeStruct(`${path}[${i}]`, [['Percentile', 'float'], ['Value', 'float']], p));
  }
  throw new DecodeError(`unknown type ${t}`);
}

/** Strict: unknown field → error (DisallowUnknownFields); missing field → error (fortio always writes it) unless omitempty. */
function decodeStruct(path: string, fields: Array<[string, string]>, v: unknown, omitempty: string[] = []): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new DecodeError(`${path}: not an object`);
  const known = new Map(fields);
  for (const k of Object.keys(v)) if (!known.has(k)) throw new DecodeError(`json: unknown field "${k}"`);
  const keys = Object.keys(v);
  const expectOrder = fields.map(([k]) => k).filter((k) => k in (v as object));
  if (keys.join() !== expectOrder.join()) throw new DecodeError(`${path}: fields out of fortio's struct order`);
  const out: Record<string, unknown> = {};
  for (const [k, t] of fields) {
    if (!(k in (v as object))) { if (omitempty.includes(k)) continue; throw new DecodeError(`${path}.${k}: missing`); }
    out[k] = decodeValue(`${path}.${k}`, t, (v as Record<string, unknown>)[k]);
  }
  return out;
}

const decode = (text: string) => decodeStruct('HTTPRunnerResults', HTTP_RUNNER_RESULTS, JSON.parse(text));
/** Go's MarshalIndent of the decoded struct (escaping <, >, & as Go does). */
const encode = (v: unknown) => JSON.stringify(v, null, 2).replace(/[<>&]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);

let up: Upstream;
beforeAll(async () => { let n = 0; up = await startUpstream((_q, r) => { if (++n % 3 === 0) r.statusCode = 503; r.end('body'); }); });
afterAll(async () => { await up.close(); });

describe("-json is fortio's HTTPRunnerResults", () => {
  it('-n mode: strict decode, every field, round-trips byte for byte; values as fortio fills them', async () => {
    const r = await run(['load', '-qps', '0', '-n', '9', '-c', '3', '-payload', 'abc', '-json', '-', `http://127.0.0.1:${up.port}/a?x=1&y=2`]);
    expect(r.code).toBe(0);
    const text = r.out.trimEnd();
    const j = decode(text);
    expect(encode(j)).toBe(text);
    expect(text).toContain('\\u0026y=2'); // Go's HTML-safe escaping
    expect(j).toMatchObject({
      RunType: 'HTTP', RequestedQPS: 'max', RequestedDuration: 'exactly 9 calls', NumThreads: 3, Exactly: 9,
      RetCodes: { 200: 6, 503: 3 }, SocketCount: 3, Sockets: [1, 1, 1], NumConnections: 3, Payload: Buffer.from('abc').toString('base64'),
      HTTPReqTimeOut: 3e9, Resolution: 0.001, ConnReuseRange: [0, 0], AbortOn: 0, LogErrors: true,
      IPCountMap: { [`127.0.0.1:${up.port}`]: 3 },
    });
    const h = j.DurationHistogram as { Count: number; Max: number; Percentiles: Array<{ Value: number }> };
    expect(h.Count).toBe(9);
    for (const p of h.Percentiles) expect(p.Value).toBeLessThanOrEqual(h.Max);
    expect((j.ErrorsDurationHistogram as { Count: number }).Count).toBe(3);
    expect((j.Sizes as { Count: number }).Count).toBe(9);
    expect(j.ID).toMatch(/^\d{4}-\d\d-\d\d-\d{6}_127_0_0_1_\d+_a_x_1_y_2_\S+$/);
  });
  it('-t mode: Exactly is 0, RequestedDuration a Go duration, RequestedQPS %.9g', async () => {
    // (the upstream answers 503 on every 3rd call, so the warmup may meet one)
    const r = await run(['load', '-qps', '12.5', '-t', '400ms', '-c', '1', '-allow-initial-errors', '-json', '-', `http://127.0.0.1:${up.port}/`]);
    const j = decode(r.out.trimEnd());
    expect([j.Exactly, j.RequestedDuration, j.RequestedQPS]).toEqual([0, '400ms', '12.5']);
  });
  it('-json-strict=false adds the separate Meshlet object, which the strict decoder refuses', async () => {
    const r = await run(['load', '-qps', '0', '-n', '2', '-c', '1', '-json-strict=false', '-json', '-', `http://127.0.0.1:${up.port}/`]);
    const raw = JSON.parse(r.out);
    expect(raw.Meshlet).toMatchObject({ LatencyFrom: 'intended start when behind schedule', BehindSchedule: 0 });
    expect(() => decode(r.out)).toThrow('json: unknown field "Meshlet"');
    delete raw.Meshlet;
    expect(() => decodeStruct('HTTPRunnerResults', HTTP_RUNNER_RESULTS, raw)).not.toThrow();
  });
});
