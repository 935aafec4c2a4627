// The proxy's workload identity: a key made here (never sent anywhere), a CSR to the control
// server's CA, and the leaf it signs (SPIFFE URI SAN spiffe://<td>/ns/<ns>/sa/<sa>, 24 h by
// default). Renewed at half its life with a new key; the TLS contexts are swapped atomically, so
// connections already open keep theirs and new handshakes use the new one: a rotation drops no
// request. A failed renewal retries with backoff while the current leaf is still valid.
import { createPrivateKey, X509Certificate } from 'node:crypto';
import type { SecureContext } from 'node:tls';
import { spawn } from 'node:child_process';
import { getCompileCacheDir } from 'node:module';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import type { KeyAndCsr } from './csr.ts';
import { ControlChannel } from '../xds/http.ts';

/**
 * node:tls, loaded when a workload certificate or a TLS upstream is first used: a plaintext
 * sidecar never needs it, and the module costs every process ~3.7 MB of private memory
 * (docs/performance.md). Synchronous, the same module every time.
 */
export const tls = (): typeof import('node:tls') => process.getBuiltinModule('node:tls');

const CSR_SCRIPT = new URL('./csr.ts', import.meta.url).pathname;

/**
 * A new key and its CSR, made by a child process of the same Node that exits with the answer: the
 * CSR library stays out of the sidecar's memory between rotations (proxy/identity/csr.ts). The
 * private key comes back over the child's stdout pipe, inside the pod; it is never written to
 * disk or sent anywhere.
 */
export function makeCsr(spiffeId: string, timeoutMs = 30_000): Promise<KeyAndCsr> {
  return new Promise((resolve, reject) => {
    // The child uses this process's compile cache from its first module (the variable is read at
    // start-up; the cache's own directory is the versioned one below the directory given).
    const cache = getCompileCacheDir();
    const env = cache !== undefined && process.env.NODE_COMPILE_CACHE === undefined ? { ...process.env, NODE_COMPILE_CACHE: dirname(cache) } : process.env;
    const c = spawn(process.execPath, [CSR_SCRIPT, spiffeId], { stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs, env });
    let out = '';
    let err = '';
    c.stdout.setEncoding('utf8').on('data', (d: string) => { out += d; });
    c.stderr.setEncoding('utf8').on('data', (d: string) => { err += d; });
    c.once('error', (e) => reject(new Error(`CSR: ${e.message}`)));
    c.once('close', (code, signal) => {
      if (code !== 0) { reject(new Error(`CSR: ${err.trim() || `exited ${code ?? signal}`}`)); return; }
      try { resolve(JSON.parse(out) as KeyAndCsr); } catch { reject(new Error('CSR: unreadable answer')); }
    });
  });
}

export interface IssuedCert { certChain: string; rootCert: string }
/** Where leaves come from: the control server's CA (controlCertSource), or a test's CA. */
export type CertSource = (csrPem: string, who: { namespace: string; serviceAccount: string; ttlSeconds?: number }) => Promise<IssuedCert>;

export interface IdentityOptions {
  trustDomain?: string;
  namespace: string;
  serviceAccount: string;
  source: CertSource;
  /** Leaf lifetime asked for (the CA may give less). Default 24 h. */
  ttlMs?: number;
  /** Renew when this share of the life is left (default 0.5: at half life). */
  renewFraction?: number;
  log?: Logger;
}

export interface CurrentCert {
  certPem: string;
  chainPem: string;
  keyPem: string;
  rootPem: string;
  serial: string;
  notBefore: Date;
  notAfter: Date;
  sans: string[];
}

export class Identity {
  readonly trustDomain: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly spiffeId: string;
  private readonly opts: IdentityOptions;
  private cur!: CurrentCert;
  private server!: SecureContext;
  private client!: SecureContext;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  /** Called after every rotation (the inbound TLS server takes the new cert). */
  private readonly listeners: Array<() => void> = [];
  readonly stats = { rotations: 0, renewal_failures: 0 };

  private constructor(opts: IdentityOptions) {
    this.opts = opts;
    this.trustDomain = opts.trustDomain ?? 'cluster.local';
    this.namespace = opts.namespace;
    this.serviceAccount = opts.serviceAccount;
    this.spiffeId = `spiffe://${this.trustDomain}/ns/${opts.namespace}/sa/${opts.serviceAccount}`;
  }

  /** Get the first leaf (throws if the CA refuses), then keep it renewed. */
  static async start(opts: IdentityOptions): Promise<Identity> {
    const id = new Identity(opts);
    await id.rotate();
    return id;
  }

  get current(): CurrentCert { return this.cur; }
  /** For a TLS server (inbound): our chain, the mesh root to verify clients. */
  serverContext(): SecureContext { return this.server; }
  /** For TLS clients (outbound): our chain, the mesh root to verify servers. */
  clientContext(): SecureContext { return this.client; }
  onRotate(f: () => void): void { this.listeners.push(f); }

  /** A new key, a CSR, the signed leaf, new contexts; schedules the next renewal. */
  async rotate(): Promise<void> {
    const { keyPem, csrPem } = await makeCsr(this.spiffeId);
    const ttl = this.opts.ttlMs ?? 24 * 3600_000;
    const got = await this.opts.source(csrPem, { namespace: this.namespace, serviceAccount: this.serviceAccount, ttlSeconds: Math.ceil(ttl / 1000) });
    const leaf = new X509Certificate(got.certChain);
    if (!leaf.checkPrivateKey(createPrivateKey(keyPem))) throw new Error('the CA answered with a certificate for another key');
    const sans = (leaf.subjectAltName ?? '').split(', ').filter((s) => s.startsWith('URI:')).map((s) => s.slice(4));
    if (!sans.includes(this.spiffeId)) throw new Error(`the CA signed ${sans.join(', ') || 'no URI SAN'}, not ${this.spiffeId}`);
    this.cur = {
      certPem: leaf.toString(), chainPem: got.certChain, keyPem, rootPem: got.rootCert, serial: leaf.serialNumber,
      notBefore: new Date(leaf.validFrom), notAfter: new Date(leaf.validTo), sans,
    };
    const ctx = { key: keyPem, cert: got.certChain, ca: got.rootCert, minVersion: 'TLSv1.3' as const };
    this.server = tls().createSecureContext(ctx);
    this.client = tls().createSecureContext(ctx);
    this.stats.rotations++;
    for (const f of this.listeners) f();
    this.schedule(this.renewDelay());
    this.opts.log?.info({ identity: this.spiffeId, serial: this.cur.serial, not_after: this.cur.notAfter.toISOString() }, 'workload certificate issued');
  }

  /** Until the renewal point: `renewFraction` of the life left (issue time = now, not the skewed notBefore). */
  private renewDelay(): number {
    const left = this.cur.notAfter.getTime() - Date.now();
    return Math.max(100, left * (1 - (this.opts.renewFraction ?? 0.5)));
  }

  private schedule(ms: number): void {
    if (this.closed) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.rotate().catch((e) => {
        this.stats.renewal_failures++;
        const left = this.cur.notAfter.getTime() - Date.now();
        this.opts.log?.warn({ err: (e as Error).message, ms_left: left }, 'certificate renewal failed; retrying');
        this.schedule(Math.min(30_000, Math.max(200, left / 10)));
      });
    }, ms);
    this.timer.unref();
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
  }
}

/** Leaves from the control server's CA: POST /v1/certificates with the bootstrap token. */
export function controlCertSource(controlUrl: string, tokenOf: string | (() => string) | undefined): CertSource {
  const base = new URL(controlUrl);
  if (base.protocol !== 'http:') throw new Error(`--control ${controlUrl}: only http:// URLs are supported`);
  const path = `${base.pathname.replace(/\/$/, '')}/v1/certificates`;
  return async (csr, who) => {
    const token = typeof tokenOf === 'function' ? tokenOf() : tokenOf;
    // A connection per CSR (one every few hours), closed after it.
    const channel = new ControlChannel(base);
    try {
      const r = await channel.request('POST', path, { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
        JSON.stringify({ csr, ...who }), 10_000);
      let body: { certChain?: string; rootCert?: string; error?: string } = {};
      try { body = JSON.parse(r.body) as typeof body; } catch { /* not JSON: reported below with the status */ }
      if (r.status !== 200 || !body.certChain || !body.rootCert) throw new Error(`the CA refused the CSR: ${r.status} ${body.error ?? ''}`.trim());
      return { certChain: body.certChain, rootCert: body.rootCert };
    } finally {
      channel.close();
    }
  };
}
