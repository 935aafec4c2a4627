// fortio's log lines (fortio.org/log) on stderr: one JSON object per line by default
// (-logger-json), or text "[WRN] msg" (coloured on a terminal); shown when at or above -loglevel.
// Only the report goes through report.ts; these are the run's events (warnings, aborts).
export type LogLevel = 'info' | 'warn' | 'err';
export type Logger = (level: LogLevel, msg: string, fields?: Record<string, unknown>) => void;

const RANK: Record<LogLevel, number> = { info: 2, warn: 3, err: 4 };
const TEXT: Record<LogLevel, string> = { info: 'INF', warn: 'WRN', err: 'ERR' };
const COLOR: Record<LogLevel, string> = { info: '\x1b[32m', warn: '\x1b[33m', err: '\x1b[31m' };

export interface LoggerOptions { level: number; json: boolean; timestamp: boolean; goroutine: boolean; color: boolean; out?: (s: string) => void }

export function makeLogger(o: LoggerOptions): Logger {
  const out = o.out ?? ((s: string) => { process.stderr.write(s); });
  return (level, msg, fields) => {
    if (RANK[level] < o.level) return;
    if (o.json) {
      const obj: Record<string, unknown> = {};
      if (o.timestamp) obj.ts = Date.now() / 1000;
      obj.level = level;
      if (o.goroutine) obj.r = 1;
      obj.msg = msg;
      Object.assign(obj, fields);
      out(`${JSON.stringify(obj)}\n`);
      return;
    }
    const ts = o.timestamp ? `${new Date().toISOString().slice(11, 23)} ` : '';
    const extra = fields ? Object.entries(fields).map(([k, x]) => `, ${k}=${typeof x === 'string' ? JSON.stringify(x) : String(x)}`).join('') : '';
    const tag = `[${TEXT[level]}]`;
    out(`${ts}${o.color ? `${COLOR[level]}${tag}\x1b[0m` : tag} ${msg}${extra}\n`);
  };
}
