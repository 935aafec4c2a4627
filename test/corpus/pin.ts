// Re-pins test/corpus/disagreements.json (`npx node test/corpus/pin.ts`) after a deliberate change of the
// engine: every non-security disagreement with the corpus, with the key of its reason (the reasons are
// explained in docs/http-conformance.md). It refuses to pin a security-relevant disagreement or one
// it has no reason for.
import { writeFileSync } from 'node:fs';
import { loadCorpus, replay, rawBytes } from './replay.ts';
const c = loadCorpus();
const out: Record<string, string> = {};
for (const k of c.cases) {
  const { result, outcome } = replay(k);
  if (result.verdict === 'security') throw new Error(`security: ${k.id}`);
  if (result.verdict !== 'disagree') continue;
  const o = outcome as any;
  const line = rawBytes(k).toString('latin1').split('\r\n')[0];
  const target = line.split(' ')[1] ?? '';
  let key: string;
  if (k.kind === 'response' && o.code === 'HPE_INVALID_TRANSFER_ENCODING') key = 'response-transfer-coding';
  else if (o.pending) key = 'incomplete-head';
  else if (o.code === 'HPE_MISSING_HOST') key = 'missing-host';
  else if (o.code === 'HPE_INVALID_HOST') key = 'invalid-host';
  else if (o.code === 'HPE_INVALID_CHUNK_SIZE') key = 'chunk-size-bound';
  else if (o.code === 'HPE_INVALID_VERSION') key = 'not-http';
  else if (o.code === 'HPE_INVALID_URL' && target.includes('#')) key = 'fragment';
  else if (o.code === 'HPE_INVALID_URL' && target.includes('@')) key = 'userinfo';
  else if (o.code === 'HPE_INVALID_URL' && target === '*') key = 'asterisk-form';
  else if (o.code === 'HPE_INVALID_URL' && line.split(' ').length === 2) key = 'http09';
  else throw new Error(`no reason for ${k.id}: ${result.why}`);
  out[k.id] = key;
}
writeFileSync(new URL('./disagreements.json', import.meta.url), `${JSON.stringify(out, null, 1)}\n`);
const counts: Record<string, number> = {};
for (const v of Object.values(out)) counts[v] = (counts[v] ?? 0) + 1;
console.log(counts);
