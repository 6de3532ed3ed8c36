// The sandbox's status: the socket to the server, its frames about the
// sandbox (hello, status, queue, expiry), and the clock.

import { Connection } from "../connection.js";
import { appendOutput, finishRun, onEnd, onOutput } from "./run.js";
import { $, exercise, state } from "./store.js";
import { editor, save } from "./tabs.js";
import { startShell, term } from "./terminal.js";
import { loadWorkspace, refreshTree } from "./tree.js";

export const conn = new Connection(
  exercise ? `/ws?output=binary&exercise=${encodeURIComponent(exercise)}` : "/ws?output=binary", {
  onOpen: () => setStatus("Connected"),
  onClose: (code) => {
    if (code !== 4000) setStatus("Reconnecting…", "warn");
  },
  onFrame: (f) => onFrame(f),
  onOutput: (job, seq, stream, bytes) => onOutput(job, seq, stream, bytes),
});

export function setStatus(text, level = "") {
  const el = $("status");
  el.textContent = text;
  el.dataset.level = level;
}

export function onFrame(f) {
  switch (f.type) {
    case "hello":
      state.languages = f.languages;
      state.expiresAt = f.expiresAt ? new Date(f.expiresAt) : null;
      sandboxStatus(f.status);
      onConnected(f);
      break;
    case "status":
      sandboxStatus(f.status);
      break;
    case "queued":
      setStatus(f.position === 1
        ? "Every sandbox is busy: yours is next in line…"
        : `Every sandbox is busy: you are number ${f.position} in line…`, "warn");
      break;
    case "expiry":
      state.expiresAt = new Date(f.expiresAt);
      tick();
      break;
    case "expired":
      state.expiresAt = null;
      sandboxStatus("expired", f.message);
      break;
    case "exit":
    case "failed":
      onEnd(f);
      break;
    case "started":
      if (f.kind === "shell" && state.shellJob !== f.job && f.ref === undefined) {
        // A shell another tab opened: follow it too.
      }
      break;
    case "gap":
      if (state.run && f.job === state.run.job) appendOutput(`\n[… output from ${f.from} to ${f.to} was dropped …]\n`, "note");
      break;
    default:
      break;
  }
}

export function sandboxStatus(status, message) {
  state.status = status;
  const banner = $("banner");
  if (status === "expired") {
    setStatus("Sandbox stopped", "warn");
    $("banner-text").textContent = message ||
      "Your sandbox stopped after a period of inactivity. Your files are kept.";
    banner.hidden = false;
    $("clock").textContent = "";
    $("run").disabled = true;
    markReady(false);
    return;
  }
  banner.hidden = true;
  if (status === "ready") {
    setStatus("Ready", "ok");
    $("run").disabled = !state.active;
    if (!state.loadedOnce) loadWorkspace();
    else if (state.wasRestoring) {
      state.wasRestoring = false;
      loadWorkspace();
    }
    markReady(true);
  } else if (status === "starting" || status === "idle") {
    setStatus("Starting your sandbox…", "warn");
  }
}

export function markReady(ready) {
  const ok = ready && state.loadedOnce && !!editor.path;
  document.body.dataset.ready = ok ? "true" : "false";
  // For the benchmark: navigation start to editor and sandbox ready.
  if (ok && window.replboxReadyAt === undefined) window.replboxReadyAt = performance.now();
}

export async function onConnected(hello) {
  // Follow up what the previous connection was doing.
  if (state.run) {
    const job = hello.jobs.find((j) => j.job === state.run.job);
    if (job) conn.send({ type: "replay", job: state.run.job, after: state.lastSeq.get(state.run.job) ?? 0 });
    else finishRun("the sandbox restarted");
  }
  if (term && hello.status !== "expired") startShell();
  for (const path of state.dirty) save(path);
  if (hello.status === "ready" && state.loadedOnce) refreshTree();
}

export function tick() {
  const clock = $("clock");
  if (!state.expiresAt || state.status === "expired") {
    clock.textContent = "";
    return;
  }
  const left = Math.max(0, Math.round((state.expiresAt - Date.now()) / 1000));
  const m = Math.floor(left / 60);
  const s = String(left % 60).padStart(2, "0");
  if (left <= 120) {
    clock.dataset.level = "warn";
    clock.textContent = `Stops in ${m}:${s}: run or type something to keep it`;
  } else {
    clock.dataset.level = "";
    const h = Math.floor(m / 60);
    clock.textContent = h > 0 ? `${h} h ${m % 60} min left` : `${m}:${s} left`;
  }
}
setInterval(tick, 1000);

$("restore").addEventListener("click", () => {
  state.wasRestoring = true;
  $("banner").hidden = true;
  setStatus("Starting your sandbox…", "warn");
  conn.send({ type: "restore" });
});
