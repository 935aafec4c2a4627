// @peculiar/x509 loads tsyringe, which refuses to load without the Reflect metadata API (the
// `reflect-metadata` package, not among our dependencies). This is the part of that API
// tsyringe uses (define/get/has metadata by key, target and property), over WeakMaps. Imported
// for its effect, before @peculiar/x509; leaves an existing implementation alone.
type Target = object;
const R = Reflect as unknown as Record<string, unknown>;
if (typeof R.getMetadata !== 'function') {
  const store = new WeakMap<Target, Map<string | symbol | undefined, Map<unknown, unknown>>>();
  const own = (t: Target, p: string | symbol | undefined, create: boolean) => {
    let byProp = store.get(t);
    if (!byProp) { if (!create) return undefined; byProp = new Map(); store.set(t, byProp); }
    let m = byProp.get(p);
    if (!m) { if (!create) return undefined; m = new Map(); byProp.set(p, m); }
    return m;
  };
  const getOwnMetadata = (k: unknown, t: Target, p?: string | symbol) => own(t, p, false)?.get(k);
  const getMetadata = (k: unknown, t: Target, p?: string | symbol): unknown => {
    for (let o: Target | null = t; o; o = Object.getPrototypeOf(o)) { const m = own(o, p, false); if (m?.has(k)) return m.get(k); }
    return undefined;
  };
  const defineMetadata = (k: unknown, v: unknown, t: Target, p?: string | symbol) => { own(t, p, true)!.set(k, v); };
  Object.assign(R, {
    defineMetadata, getOwnMetadata, getMetadata,
    hasMetadata: (k: unknown, t: Target, p?: string | symbol) => getMetadata(k, t, p) !== undefined,
    hasOwnMetadata: (k: unknown, t: Target, p?: string | symbol) => own(t, p, false)?.has(k) ?? false,
    metadata: (k: unknown, v: unknown) => (t: Target, p?: string | symbol) => defineMetadata(k, v, t, p),
  });
}
export {};
