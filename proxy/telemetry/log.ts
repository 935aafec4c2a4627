// pino loggers: the process log (JSON lines on stdout) and the access log, which is built only
// when enabled for that request class (no string building when off).
import pino, { type Logger } from 'pino';

export type AccessLogMode = 'off' | 'errors' | 'all';

export function createLogger(level: string, name = 'meshlet'): Logger {
  return pino({ name, level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime });
}
