// The IDE page's first script: opens the page's socket while the editor's
// code (most of the page's bytes) is still loading, so the sandbox is
// claimed and its first frames wait in a queue. `Connection` adopts the
// socket and replays the queue (connection.js). No imports: it must not wait
// for any other file. If the rest of the page fails to load, this socket
// still holds the session's sandbox until the tab closes (as an open tab
// would).

const exercise = document.body.dataset.exercise;
const path = exercise
  ? `/ws?output=binary&exercise=${encodeURIComponent(exercise)}`
  : "/ws?output=binary";
const proto = location.protocol === "https:" ? "wss:" : "ws:";
const ws = new WebSocket(`${proto}//${location.host}${path}`);
ws.binaryType = "arraybuffer";
const events = [];
// The workspace's listing is asked for as soon as the sandbox is ready,
// with ref 0 (the Connection's own refs start at 1): the answer is waiting
// when the editor's code has loaded (tree.js takes it).
const early = { path, ws, events, listRef: null };
ws.onopen = ws.onclose = (ev) => events.push(ev);
ws.onmessage = (ev) => {
  events.push(ev);
  if (early.listRef === null && typeof ev.data === "string" && ev.data.includes('"status":"ready"')) {
    early.listRef = 0;
    ws.send(JSON.stringify({ type: "file.list", path: "", ref: 0 }));
  }
};
window.replboxEarlySocket = early;
