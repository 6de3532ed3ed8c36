// The page's socket: JSON control frames, binary output frames, requests
// answered by `ref`, and reconnection with backoff.

export class Connection {
  constructor(path, handlers) {
    this.path = path;
    this.handlers = handlers;
    this.ws = null;
    this.nextRef = 1;
    this.pending = new Map();
    this.backoff = 250;
    this.closedByUs = false;
  }

  connect() {
    // The first time: the socket boot.js opened for this path, if any.
    const early = window.replboxEarlySocket;
    window.replboxEarlySocket = undefined;
    let ws;
    if (early && early.path === this.path) {
      ws = early.ws;
    } else {
      early?.ws.close();
      const proto = location.protocol === "https:" ? "wss:" : "ws:";
      ws = new WebSocket(`${proto}//${location.host}${this.path}`);
      ws.binaryType = "arraybuffer";
    }
    this.ws = ws;
    // A request boot.js made on the early socket: its answer (replayed
    // below, or still to come) resolves `earlyList`.
    if (ws === early?.ws && early.listRef !== null) {
      this.earlyList = new Promise((resolve, reject) => this.pending.set(early.listRef, { resolve, reject }));
      this.earlyList.catch(() => {});
    }
    ws.onopen = () => {
      this.backoff = 250;
      this.handlers.onOpen?.();
    };
    ws.onmessage = (ev) => {
      if (typeof ev.data === "string") {
        let frame;
        try {
          frame = JSON.parse(ev.data);
        } catch {
          return;
        }
        if (frame.ref !== undefined && this.pending.has(frame.ref)) {
          const { resolve, reject, keep } = this.pending.get(frame.ref);
          if (!keep) this.pending.delete(frame.ref);
          if (frame.type === "error") reject(frame);
          else resolve(frame);
        }
        this.handlers.onFrame?.(frame);
      } else {
        const buf = new Uint8Array(ev.data);
        if (buf.length < 18 || buf[0] !== 1) return;
        const view = new DataView(ev.data);
        const job = Number(view.getBigUint64(2));
        const seq = Number(view.getBigUint64(10));
        const stream = ["stdout", "stderr", "pty"][buf[1]] ?? "stdout";
        this.handlers.onOutput?.(job, seq, stream, buf.subarray(18));
      }
    };
    ws.onclose = (ev) => {
      for (const { reject } of this.pending.values()) {
        reject({ code: "disconnected", message: "The connection was lost." });
      }
      this.pending.clear();
      this.handlers.onClose?.(ev.code);
      if (this.closedByUs) return;
      const wait = ev.code === 4000 ? 100 : this.backoff;
      this.backoff = Math.min(this.backoff * 2, 5000);
      setTimeout(() => this.connect(), wait);
    };
    // What the early socket heard before we took it, in order (no event
    // can come between: they are dispatched after this task).
    if (ws === early?.ws) {
      for (const ev of early.events) {
        try {
          ws[`on${ev.type}`](ev);
        } catch (e) {
          reportError(e);
        }
      }
    }
  }

  get open() {
    return this.ws && this.ws.readyState === WebSocket.OPEN;
  }

  send(frame) {
    if (!this.open) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  /// Sends a frame with a fresh `ref`; resolves with the answer carrying it.
  request(frame) {
    return new Promise((resolve, reject) => {
      if (!this.open) {
        reject({ code: "disconnected", message: "Not connected." });
        return;
      }
      const ref = this.nextRef++;
      this.pending.set(ref, { resolve, reject });
      this.ws.send(JSON.stringify({ ...frame, ref }));
    });
  }

  /// Stdin bytes for a job: 0x02, job id (u64 BE), bytes.
  sendStdin(job, bytes) {
    if (!this.open) return false;
    const buf = new Uint8Array(9 + bytes.length);
    new DataView(buf.buffer).setBigUint64(1, BigInt(job));
    buf[0] = 2;
    buf.set(bytes, 9);
    this.ws.send(buf);
    return true;
  }
}
