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
ws.onopen = ws.onmessage = ws.onclose = (ev) => events.push(ev);
window.replboxEarlySocket = { path, ws, events };
