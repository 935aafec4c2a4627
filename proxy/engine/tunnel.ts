// A byte relay between two sockets: the downstream and the upstream of an upgraded connection
// (WebSocket or any Upgrade after its 101) or of a CONNECT tunnel. Bytes flow both ways as the
// sockets produce them, with backpressure (a side whose peer is backed up is paused until the
// peer drains), half-close (a FIN from one side is passed on as a FIN to the other, which may go
// on sending: TCP semantics, both sockets allowHalfOpen), and resets (an RST or a socket error on
// one side resets the other, so neither peer mistakes a broken tunnel for a clean end). An idle
// timeout closes a tunnel with no bytes either way for that long. Every socket error is caught
// here: a tunnel can fail, the process never.
import type { Socket } from 'node:net';

/** How a tunnel ended. `end`: both sides closed cleanly (FIN both ways). */
export type TunnelEnd = 'end' | 'downstream_reset' | 'upstream_reset' | 'idle_timeout' | 'destroyed';

export interface TunnelOptions {
  /** Close the tunnel after this long with no bytes either way; 0 = never. */
  idleTimeoutMs: number;
  /** Called once, when both sockets are closed. */
  onClose(t: Tunnel, how: TunnelEnd): void;
}

export class Tunnel {
  readonly down: Socket;
  readonly up: Socket;
  /** Bytes read from the downstream (sent upstream) and from the upstream (sent downstream). */
  rxBytes = 0;
  txBytes = 0;
  private readonly opts: TunnelOptions;
  private how: TunnelEnd | null = null;
  private downClosed = false;
  private upClosed = false;
  private finished = false;
  private lastActive = performance.now();
  private timer: NodeJS.Timeout | null = null;

  /** `downHead` / `upHead`: bytes each side sent after its HTTP head, already read (sent on now). */
  constructor(down: Socket, downHead: Buffer, up: Socket, upHead: Buffer, opts: TunnelOptions) {
    this.down = down;
    this.up = up;
    this.opts = opts;
    this.wire(down, up, true);
    this.wire(up, down, false);
    if (downHead.length > 0) { this.rxBytes += downHead.length; if (!up.write(downHead)) down.pause(); }
    if (upHead.length > 0) { this.txBytes += upHead.length; if (!down.write(upHead)) up.pause(); }
    if (opts.idleTimeoutMs > 0) this.arm(opts.idleTimeoutMs);
    // Either socket may have been paused by its HTTP owner (backpressure): the tunnel reads now.
    if (!down.writableNeedDrain) up.resume();
    if (!up.writableNeedDrain) down.resume();
    // A socket that closed before the tunnel got it (the peer left with its 101 in flight).
    if (down.destroyed) this.onSocketClose(down, true);
    if (up.destroyed) this.onSocketClose(up, false);
  }

  private wire(from: Socket, to: Socket, isDown: boolean): void {
    // A FIN must not close our writing side on its own: the other direction may still be flowing.
    from.allowHalfOpen = true;
    from.on('data', (c: Buffer) => {
      this.lastActive = performance.now();
      if (isDown) this.rxBytes += c.length; else this.txBytes += c.length;
      if (!to.write(c)) from.pause();
    });
    to.on('drain', () => { if (!from.destroyed) from.resume(); });
    // Half-close: pass the FIN on once what was read before it is written.
    from.on('end', () => { if (!to.destroyed) to.end(); });
    from.on('error', () => {
      // ECONNRESET / EPIPE: the peer reset. Reset the other side too (an RST, not a FIN).
      this.setHow(isDown ? 'downstream_reset' : 'upstream_reset');
      reset(to);
    });
    from.on('close', () => this.onSocketClose(from, isDown));
  }

  private setHow(how: TunnelEnd): void { if (this.how === null) this.how = how; }

  private onSocketClose(s: Socket, isDown: boolean): void {
    if (isDown ? this.downClosed : this.upClosed) return;
    if (isDown) this.downClosed = true; else this.upClosed = true;
    const other = isDown ? this.up : this.down;
    // A side closed without both FINs exchanged (destroyed, reset): the other goes too.
    if (!other.destroyed) {
      const clean = s.readableEnded && s.writableFinished;
      if (clean) {
        // Closed after a full half-close exchange: let the other side finish writing, then close.
        if (other.readableEnded) other.destroySoon(); else other.end();
      } else {
        this.setHow(isDown ? 'downstream_reset' : 'upstream_reset');
        reset(other);
      }
    }
    if (this.downClosed && this.upClosed) this.finish();
  }

  private arm(ms: number): void {
    this.timer = setTimeout(onIdleTimer, ms, this);
    this.timer.unref(); // the sockets keep the process alive, not the timer
  }

  /** The idle timer: re-armed for what is left, or the tunnel is closed. */
  checkIdle(): void {
    this.timer = null;
    if (this.finished) return;
    const idle = this.opts.idleTimeoutMs;
    const left = this.lastActive + idle - performance.now();
    if (left > 0) { this.arm(Math.ceil(left)); return; }
    this.setHow('idle_timeout');
    this.down.destroy();
    this.up.destroy();
  }

  /** Close both sides now (the stream was ended elsewhere: draining, a filter error). */
  destroy(): void {
    if (this.finished) return;
    this.setHow('destroyed');
    this.down.destroy();
    this.up.destroy();
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    if (this.timer !== null) { clearTimeout(this.timer); this.timer = null; }
    this.opts.onClose(this, this.how ?? 'end');
  }
}

function onIdleTimer(t: Tunnel): void { t.checkIdle(); }

/** Reset a socket (RST where the platform can), never throwing. */
function reset(s: Socket): void {
  if (s.destroyed) return;
  try {
    if (typeof s.resetAndDestroy === 'function' && s.readyState !== 'opening') s.resetAndDestroy();
    else s.destroy();
  } catch {
    s.destroy();
  }
}
