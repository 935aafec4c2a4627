// -access-log-file / -access-log-format: one line per call, as fortio's periodic access logger
// (periodic.go fileAccessLogger) writes them (json: one object per line; influx: InfluxDB line protocol). Timestamps are the
// call's start in Unix nanoseconds, latency in seconds. Written through one buffered stream.
import { createWriteStream, type WriteStream } from 'node:fs';

export type AccessFormat = 'json' | 'influx';

export class AccessLogger {
  readonly format: AccessFormat;
  readonly path: string;
  private readonly out: WriteStream;
  constructor(path: string, format: AccessFormat) {
    this.path = path;
    this.format = format;
    this.out = createWriteStream(path, { flags: 'a' });
  }
  /** fortio's AccessLoggerInfo text in the JSON result. */
  info(): string { return `mode ${this.format} to ${this.path}`; }
  report(thread: number, iter: number, startNs: bigint, latencySec: number, ok: boolean, details: string): void {
    const lat = latencySec.toFixed(6);
    this.out.write(this.format === 'influx'
      ? `latency,thread=${thread},ok=${ok} value=${lat},details=${JSON.stringify(details)} ${startNs}\n`
      : `{"latency":${lat},"timestamp":${startNs},"thread":${thread},"iter":${iter},"ok":${ok},"details":${JSON.stringify(details)}}\n`);
  }
  close(): Promise<void> { return new Promise((resolve) => this.out.end(() => resolve())); }
}
