// A config file or directory, watched for changes: the same *.yaml/*.yml files the proxy reads
// (hidden files skipped). Shared by the control server's directory source and `meshlet proxy
// --watch`. The watch is on the directory (a file's parent): editors save by writing a temporary
// and renaming it over the file, and a Kubernetes ConfigMap volume swaps its `..data` symlink, so
// the inode a file watch follows is gone after the first save. Events are debounced (editors and
// `git checkout` touch many files), and a read is only delivered when nothing changed while it
// was read (size, mtime and inode of every file equal before and after, `settleMs` apart), so a
// file still being written is never handed on. fs.watch can miss events (network file systems,
// a watched directory that is itself replaced), so a cheap poll of the same fingerprint (every
// 2 s: a stat per file) backs it up.
import { readFileSync, statSync, watch, type FSWatcher } from 'node:fs';
import type { Logger } from 'pino';
import { dirname } from 'node:path';
import { listConfigFiles } from './load.ts';

export interface DirSourceOptions {
  debounceMs: number;
  settleMs: number;
  pollMs: number;
}

export const DEFAULT_DIR_OPTIONS: DirSourceOptions = { debounceMs: 100, settleMs: 50, pollMs: 2000 };

/** path -> text of every config file, in listConfigFiles order. */
export type DirFiles = Map<string, string>;

/** What to watch: the directory itself, or a file's parent directory. */
function watchTarget(path: string): string {
  try { return statSync(path).isDirectory() ? path : dirname(path); } catch { return dirname(path); }
}

function fingerprint(dir: string): string {
  const parts: string[] = [];
  for (const f of listConfigFiles(dir)) {
    try {
      const st = statSync(f);
      parts.push(`${f}:${st.size}:${st.mtimeMs}:${st.ino}`);
    } catch {
      parts.push(`${f}:gone`);
    }
  }
  return parts.join('\n');
}

/** Read the directory once. Throws if it cannot be read (missing, permissions). */
export function readDir(dir: string): DirFiles {
  const out: DirFiles = new Map();
  for (const f of listConfigFiles(dir)) out.set(f, readFileSync(f, 'utf8'));
  return out;
}

export class DirSource {
  readonly dir: string;
  private readonly opts: DirSourceOptions;
  private readonly onChange: (files: DirFiles) => void;
  private readonly log: Logger;
  private watcher: FSWatcher | null = null;
  private debounce: NodeJS.Timeout | null = null;
  private readonly poll: NodeJS.Timeout;
  private lastPrint = '';
  private closed = false;

  constructor(dir: string, opts: DirSourceOptions, onChange: (files: DirFiles) => void, log: Logger) {
    this.dir = dir;
    this.opts = opts;
    this.onChange = onChange;
    this.log = log;
    try { this.lastPrint = fingerprint(dir); } catch { this.lastPrint = ''; }
    this.startWatch();
    this.poll = setInterval(() => {
      let fp = '';
      try { fp = fingerprint(dir); } catch { /* directory gone for now: keep polling */ }
      if (fp !== this.lastPrint) this.schedule();
      if (!this.watcher) this.startWatch();
    }, opts.pollMs);
    this.poll.unref();
  }

  private startWatch(): void {
    try {
      // The directory, not the files: atomic renames replace the inode a file watch would follow.
      this.watcher = watch(watchTarget(this.dir), { persistent: false }, () => this.schedule());
      this.watcher.on('error', (e) => {
        this.log.warn({ err: e.message, dir: this.dir }, 'config directory watch failed; polling');
        this.watcher?.close();
        this.watcher = null;
      });
    } catch (e) {
      this.watcher = null;
      this.log.warn({ err: (e as Error).message, dir: this.dir }, 'cannot watch config directory; polling');
    }
  }

  /** Debounced: the read happens `debounceMs` after the last event. */
  schedule(): void {
    if (this.closed) return;
    if (this.debounce) clearTimeout(this.debounce);
    this.debounce = setTimeout(() => { this.debounce = null; void this.readStable(); }, this.opts.debounceMs);
  }

  private async readStable(): Promise<void> {
    let before: string;
    let files: DirFiles;
    try {
      before = fingerprint(this.dir);
      files = readDir(this.dir);
    } catch (e) {
      // A file listed then removed mid-read (git checkout) or the directory being replaced: retry.
      this.log.debug({ err: (e as Error).message }, 'config directory changed while reading; retrying');
      this.schedule();
      return;
    }
    await new Promise((r) => setTimeout(r, this.opts.settleMs));
    if (this.closed) return;
    let after = '';
    try { after = fingerprint(this.dir); } catch { /* handled as a change */ }
    if (after !== before) { this.schedule(); return; }
    this.lastPrint = after;
    this.onChange(files);
  }

  close(): void {
    this.closed = true;
    if (this.debounce) clearTimeout(this.debounce);
    clearInterval(this.poll);
    this.watcher?.close();
  }
}
