// @peculiar/x509 resolves its ASN.1 providers through tsyringe, which refuses to load without
// the Reflect metadata API (normally the `reflect-metadata` package, not a dependency here).
// tsyringe only stores and reads metadata by key, so a minimal WeakMap-backed version is enough.
// Imported before @peculiar/x509 by every module that uses it; a real polyfill, if present, wins.
type Target = object;
const store = new WeakMap<Target, Map<string | symbol | undefined, Map<unknown, unknown>>>();
const R = Reflect as unknown as Record<string, unknown>;
if (typeof R.getMetadata !== 'function') {
  const table = (t: Target, p: string | symbol | undefined, make: boolean) => {
    let byProp = store.get(t);
    if (!byProp) { if (!make) return undefined; byProp = new Map(); store.set(t, byProp); }
    let m = byProp.get(p);
    if (!m && make) { m = new Map(); byProp.set(p, m); }
    return m;
  };
  const getOwn = (k: unknown, t: Target, p?: string | symbol) => table(t, p, false)?.get(k);
  const get = (k: unknown, t: Target, p?: string | symbol): unknown => {
    for (let o: Target | null = t; o !== null; o = Object.getPrototypeOf(o)) {
      const m = table(o, p, false);
      if (m?.has(k)) return m.get(k);
    }
    return undefined;
  };
  R.defineMetadata = (k: unknown, v: unknown, t: Target, p?: string | symbol) => { table(t, p, true)!.set(k, v); };
  R.getOwnMetadata = getOwn;
  R.getMetadata = get;
  R.hasOwnMetadata = (k: unknown, t: Target, p?: string | symbol) => table(t, p, false)?.has(k) ?? false;
  R.hasMetadata = (k: unknown, t: Target, p?: string | symbol) => get(k, t, p) !== undefined;
  R.metadata = (k: unknown, v: unknown) => (t: Target, p?: string | symbol) => { table(t, p, true)!.set(k, v); };
}
export {};
