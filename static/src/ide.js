// The IDE page: files, tabs, the editor, Run with input, the terminal,
// and the session's clock. Talks to the server over one socket
// (docs/protocol.md), output as binary frames.

import { Connection } from "./connection.js";
import { Editor } from "./editor.js";
import { ask, confirmDialog } from "./dialog.js";
import "./ide.css";

const $ = (id) => document.getElementById(id);
const encoder = new TextEncoder();
/// On an exercise's page: its id (its own workspace, tabs and drafts).
const exercise = document.body.dataset.exercise || null;
const scope = exercise ? `replbox.x.${exercise}.` : "replbox.";
const store = {
  get(key, fallback) {
    try {
      const v = localStorage.getItem(`${scope}${key}`);
      return v === null ? fallback : JSON.parse(v);
    } catch {
      return fallback;
    }
  },
  set(key, value) {
    try {
      localStorage.setItem(`${scope}${key}`, JSON.stringify(value));
    } catch { /* full or disabled: drafts are a convenience */ }
  },
  remove(key) {
    try { localStorage.removeItem(`${scope}${key}`); } catch { /* ignore */ }
  },
};

const WELCOME = {
  "main.py": 'name = input("What is your name? ")\nprint(f"Hello, {name}! Welcome to replbox.")\n',
  "main.js": 'const greet = (who) => `Hello, ${who}!`;\nconsole.log(greet("JavaScript"));\n',
  "main.sh": '#!/bin/bash\nfor lang in Python JavaScript Bash Go; do\n    echo "replbox runs $lang"\ndone\n',
  "main.go": 'package main\n\nimport "fmt"\n\nfunc main() {\n\tfmt.Println("Hello from Go!")\n}\n',
};

const state = {
  status: "connecting",
  languages: [],
  expiresAt: null,
  tabs: store.get("tabs", []),
  active: store.get("active", null),
  dirty: new Set(),
  saving: new Map(),
  saveTimers: new Map(),
  // Each open file's version as this tab last read or wrote it: a save
  // lands only if the file still has it (see docs/protocol.md).
  versions: new Map(),
  // Files another tab or a program saved since this tab's copy: their
  // saves wait until the student picks Reload or Keep mine.
  conflicts: new Set(),
  tree: new Map(),
  expanded: new Set(store.get("expanded", [])),
  selected: null,
  run: null,
  shellJob: null,
  lastSeq: new Map(),
  loadedOnce: false,
};

const editor = new Editor($("editor"), {
  onChange: (path, text) => {
    state.dirty.add(path);
    store.set(`draft:${path}`, text);
    renderTabs();
    clearTimeout(state.saveTimers.get(path));
    state.saveTimers.set(path, setTimeout(() => save(path), 600));
  },
  onRun: () => run(),
  onSave: () => state.active && save(state.active),
});

const conn = new Connection(
  exercise ? `/ws?output=binary&exercise=${encodeURIComponent(exercise)}` : "/ws?output=binary", {
  onOpen: () => setStatus("Connected"),
  onClose: (code) => {
    if (code !== 4000) setStatus("Reconnecting…", "warn");
  },
  onFrame: (f) => onFrame(f),
  onOutput: (job, seq, stream, bytes) => onOutput(job, seq, stream, bytes),
});

// ---------------------------------------------------------------- status

function setStatus(text, level = "") {
  const el = $("status");
  el.textContent = text;
  el.dataset.level = level;
}

function onFrame(f) {
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

function sandboxStatus(status, message) {
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

function markReady(ready) {
  const ok = ready && state.loadedOnce && !!editor.path;
  document.body.dataset.ready = ok ? "true" : "false";
  // For the benchmark: navigation start to editor and sandbox ready.
  if (ok && window.replboxReadyAt === undefined) window.replboxReadyAt = performance.now();
}

async function onConnected(hello) {
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

// ---------------------------------------------------------------- clock

function tick() {
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

// ---------------------------------------------------------------- files

function joinPath(dir, name) {
  return dir ? `${dir}/${name}` : name;
}

function dirOf(path) {
  const i = path.lastIndexOf("/");
  return i < 0 ? "" : path.slice(0, i);
}

async function list(dir) {
  const f = await conn.request({ type: "file.list", path: dir });
  const entries = f.entries.filter((e) => !e.name.startsWith("."));
  entries.sort((a, b) => (a.kind === "dir") === (b.kind === "dir") ? a.name.localeCompare(b.name) : a.kind === "dir" ? -1 : 1);
  state.tree.set(dir, entries);
  return entries;
}

async function refreshTree() {
  try {
    await list("");
    for (const dir of [...state.expanded]) {
      try { await list(dir); } catch { state.expanded.delete(dir); }
    }
    renderTree();
  } catch (e) {
    showError(e);
  }
}

async function loadWorkspace() {
  try {
    const root = await list("");
    if (!exercise && root.length === 0 && !store.get("welcomed", false)) {
      for (const [path, text] of Object.entries(WELCOME)) {
        await conn.request({ type: "file.write", path, data: text });
      }
      store.set("welcomed", true);
      await list("");
      state.tabs = ["main.py"];
      state.active = "main.py";
    }
    store.set("welcomed", true);
    for (const dir of [...state.expanded]) {
      try { await list(dir); } catch { state.expanded.delete(dir); }
    }
    renderTree();
    const tabs = state.tabs.slice();
    const active = state.active;
    state.tabs = [];
    for (const path of tabs) await openFile(path, { quiet: true, focus: false });
    if (active && state.tabs.includes(active)) await openFile(active, { focus: false });
    else if (state.tabs.length) await openFile(state.tabs[0], { focus: false });
    else if (root.some((e) => e.name === "main.py")) await openFile("main.py", { focus: false });
    else {
      const first = root.find((e) => e.kind === "file");
      if (first) await openFile(first.name, { focus: false });
    }
    state.loadedOnce = true;
    markReady(state.status === "ready");
  } catch (e) {
    showError(e);
  }
}

function renderTree() {
  const root = $("tree");
  root.replaceChildren(...renderEntries(""));
}

function renderEntries(dir) {
  const items = [];
  for (const e of state.tree.get(dir) ?? []) {
    const path = joinPath(dir, e.name);
    const li = document.createElement("li");
    li.setAttribute("role", "treeitem");
    const button = document.createElement("button");
    button.type = "button";
    button.className = `entry ${e.kind}`;
    button.dataset.path = path;
    button.dataset.kind = e.kind;
    button.textContent = (e.kind === "dir" ? (state.expanded.has(path) ? "▾ " : "▸ ") : "") + e.name;
    if (path === state.selected) button.classList.add("selected");
    if (path === state.active) button.setAttribute("aria-current", "true");
    button.addEventListener("click", () => select(path, e.kind));
    li.append(button);
    if (e.kind === "dir") {
      li.setAttribute("aria-expanded", String(state.expanded.has(path)));
      if (state.expanded.has(path)) {
        const ul = document.createElement("ul");
        ul.setAttribute("role", "group");
        ul.append(...renderEntries(path));
        li.append(ul);
      }
    }
    items.push(li);
  }
  return items;
}

async function select(path, kind) {
  state.selected = path;
  if (kind === "dir") {
    if (state.expanded.has(path)) state.expanded.delete(path);
    else {
      state.expanded.add(path);
      try { await list(path); } catch (e) { showError(e); }
    }
    store.set("expanded", [...state.expanded]);
    renderTree();
    document.querySelector(`#tree [data-path="${CSS.escape(path)}"]`)?.focus();
  } else {
    await openFile(path);
  }
}

function selectedDir() {
  const sel = state.selected;
  if (!sel) return "";
  const entry = (state.tree.get(dirOf(sel)) ?? []).find((e) => joinPath(dirOf(sel), e.name) === sel);
  return entry?.kind === "dir" ? sel : dirOf(sel);
}

const EMPTY_NOTEBOOK = JSON.stringify({
  cells: [], metadata: { kernelspec: { name: "python3", display_name: "Python 3 (ipykernel)", language: "python" } },
  nbformat: 4, nbformat_minor: 5,
});

/// The text of a `file` frame (base64 for bytes that are not UTF-8).
function fileText(f) {
  return f.encoding === "base64" ? atob(f.data) : f.data;
}

/// Where `p` is once `from` is renamed to `to` (it, or a path inside it),
/// or null when the rename does not touch it.
function renamedPath(p, from, to) {
  return p === from || p.startsWith(`${from}/`) ? to + p.slice(from.length) : null;
}

async function openFile(path, { quiet = false, focus = true } = {}) {
  if (path.endsWith(".ipynb")) {
    // Notebooks open on their own page.
    if (!quiet) location.href = `/notebook/${path.split("/").map(encodeURIComponent).join("/")}`;
    state.tabs = state.tabs.filter((p) => p !== path);
    return;
  }
  try {
    if (!editor.states.has(path)) {
      const f = await conn.request({ type: "file.read", path });
      state.versions.set(path, f.version);
      let text = fileText(f);
      const draft = store.get(`draft:${path}`, null);
      if (draft !== null && draft !== text) {
        text = draft;
        state.dirty.add(path);
        setTimeout(() => save(path), 0);
      }
      editor.show(path, text);
    } else {
      editor.show(path);
    }
    if (!state.tabs.includes(path)) state.tabs.push(path);
    state.active = path;
    state.selected = path;
    persistTabs();
    renderTabs();
    renderTree();
    renderConflict();
    $("run").disabled = state.status !== "ready" || !!state.run;
    if (focus) editor.focus();
  } catch (e) {
    if (e.code === "not_found") {
      store.remove(`draft:${path}`);
      state.tabs = state.tabs.filter((p) => p !== path);
      persistTabs();
      if (!quiet) showError(e);
    } else if (!quiet) {
      showError(e);
    }
  }
}

function persistTabs() {
  store.set("tabs", state.tabs);
  store.set("active", state.active);
}

function renderTabs() {
  const bar = $("tabs");
  bar.replaceChildren(...state.tabs.map((path) => {
    const tab = document.createElement("div");
    tab.className = "tab";
    const b = document.createElement("button");
    b.type = "button";
    b.setAttribute("role", "tab");
    b.setAttribute("aria-selected", String(path === state.active));
    b.title = path;
    b.textContent = path.split("/").pop() + (state.dirty.has(path) ? " •" : "");
    if (state.dirty.has(path)) b.setAttribute("aria-description", "unsaved changes");
    b.addEventListener("click", () => openFile(path));
    const close = document.createElement("button");
    close.type = "button";
    close.className = "close";
    close.setAttribute("aria-label", `Close ${path}`);
    close.textContent = "×";
    close.addEventListener("click", () => closeTab(path));
    tab.append(b, close);
    return tab;
  }));
}

/// Shows the conflict bar when the file on view was saved elsewhere since.
function renderConflict() {
  const path = state.active;
  const on = !!path && state.conflicts.has(path);
  $("conflict").hidden = !on;
  if (on) $("conflict-text").textContent = `${path} was changed in another tab or by a program since you opened it.`;
}

/// Reload: the copy on disk replaces this tab's (still undoable).
async function reloadConflicted() {
  const path = state.active;
  if (!path) return;
  try {
    const f = await conn.request({ type: "file.read", path });
    state.versions.set(path, f.version);
    state.conflicts.delete(path);
    editor.replace(path, fileText(f));
    state.dirty.delete(path);
    clearTimeout(state.saveTimers.get(path));
    store.remove(`draft:${path}`);
    renderTabs();
    renderConflict();
  } catch (e) {
    if (e.code !== "not_found") return showError(e);
    // Deleted elsewhere: nothing to reload; Keep mine would bring it back.
    state.conflicts.delete(path);
    state.dirty.delete(path);
    store.remove(`draft:${path}`);
    await closeTab(path);
    await refreshTree();
    showError({ message: `${path} was deleted in another tab or by a program.` });
  }
}

$("conflict-reload").addEventListener("click", reloadConflicted);
$("conflict-keep").addEventListener("click", () => state.active && save(state.active, { force: true }));

async function closeTab(path) {
  if (state.dirty.has(path)) await save(path);
  state.tabs = state.tabs.filter((p) => p !== path);
  editor.forget(path);
  state.versions.delete(path);
  state.conflicts.delete(path);
  renderConflict();
  if (state.active === path) {
    state.active = null;
    if (state.tabs.length) await openFile(state.tabs[state.tabs.length - 1]);
  }
  persistTabs();
  renderTabs();
  $("run").disabled = !state.active || state.status !== "ready";
}

/// Saves a file to the sandbox; the draft stays in localStorage until then.
/// `force` (Keep mine) writes over whatever is there.
async function save(path, { force = false } = {}) {
  clearTimeout(state.saveTimers.get(path));
  if (!state.dirty.has(path) && !force) return;
  if (state.conflicts.has(path) && !force) return;
  const text = editor.text(path);
  if (text === undefined) return;
  if (state.saving.has(path)) {
    await state.saving.get(path);
    if (!state.dirty.has(path) && !force) return;
  }
  const frame = { type: "file.write", path, data: text };
  if (!force && state.versions.get(path)) frame.ifVersion = state.versions.get(path);
  const p = conn.request(frame).then((reply) => {
    state.versions.set(path, reply.version);
    state.conflicts.delete(path);
    renderConflict();
    if (editor.text(path) === text) {
      state.dirty.delete(path);
      store.remove(`draft:${path}`);
    }
  }).catch((e) => {
    if (e.code === "file_changed") {
      // Another tab or a program saved it since this copy: ask, lose
      // nothing (the draft stays in localStorage meanwhile).
      state.conflicts.add(path);
      renderConflict();
    } else if (e.code !== "disconnected") {
      showError(e);
    }
  }).finally(() => {
    state.saving.delete(path);
    renderTabs();
  });
  state.saving.set(path, p);
  return p;
}

window.addEventListener("beforeunload", () => {
  for (const path of state.dirty) save(path);
});
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "hidden") for (const path of state.dirty) save(path);
});

$("new-file").addEventListener("click", async () => {
  const dir = selectedDir();
  const name = await ask("New file name", dir ? `${dir}/` : "");
  if (!name) return;
  try {
    await conn.request({ type: "file.write", path: name, data: "" });
    if (dirOf(name)) state.expanded.add(dirOf(name));
    await refreshTree();
    await openFile(name);
  } catch (e) { showError(e); }
});

$("new-notebook").addEventListener("click", async () => {
  const dir = selectedDir();
  let name = await ask("New notebook name", dir ? `${dir}/untitled.ipynb` : "untitled.ipynb");
  if (!name) return;
  if (!name.endsWith(".ipynb")) name += ".ipynb";
  try {
    await conn.request({ type: "file.write", path: name, data: EMPTY_NOTEBOOK });
    await openFile(name);
  } catch (e) { showError(e); }
});

$("new-folder").addEventListener("click", async () => {
  const dir = selectedDir();
  const name = await ask("New folder name", dir ? `${dir}/` : "");
  if (!name) return;
  try {
    await conn.request({ type: "file.mkdir", path: name });
    state.expanded.add(name);
    await refreshTree();
  } catch (e) { showError(e); }
});

async function renameSelected() {
  const from = state.selected;
  if (!from) return;
  const to = await ask(`Rename ${from} to`, from);
  if (!to || to === from) return;
  try {
    if (state.dirty.has(from)) await save(from);
    await conn.request({ type: "file.rename", from, to });
    editor.rename(from, to);
    // A rename keeps a file's version: carry it (and any conflict) along.
    for (const m of [state.versions, state.conflicts]) {
      for (const p of [...m.keys()]) {
        const q = renamedPath(p, from, to);
        if (q === null) continue;
        if (m instanceof Map) m.set(q, m.get(p)); else m.add(q);
        m.delete(p);
      }
    }
    state.tabs = state.tabs.map((p) => renamedPath(p, from, to) ?? p);
    if (state.active === from) state.active = to;
    state.selected = to;
    persistTabs();
    renderTabs();
    await refreshTree();
  } catch (e) { showError(e); }
}

async function deleteSelected() {
  const path = state.selected;
  if (!path) return;
  if (!(await confirmDialog(`Delete ${path}? This cannot be undone.`))) return;
  try {
    await conn.request({ type: "file.delete", path });
    for (const p of state.tabs.filter((t) => t === path || t.startsWith(`${path}/`))) {
      state.dirty.delete(p);
      store.remove(`draft:${p}`);
      await closeTab(p);
    }
    state.selected = null;
    await refreshTree();
  } catch (e) { showError(e); }
}

$("rename").addEventListener("click", renameSelected);
$("delete").addEventListener("click", deleteSelected);
$("refresh").addEventListener("click", refreshTree);
$("tree").addEventListener("keydown", (ev) => {
  if (ev.key === "F2") { ev.preventDefault(); renameSelected(); }
  if (ev.key === "Delete") { ev.preventDefault(); deleteSelected(); }
});

function toBase64(buffer) {
  const bytes = new Uint8Array(buffer);
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

async function upload(files) {
  const dir = selectedDir();
  for (const file of files) {
    try {
      const data = toBase64(await file.arrayBuffer());
      await conn.request({ type: "file.write", path: joinPath(dir, file.name), data, encoding: "base64" });
    } catch (e) { showError(e); }
  }
  await refreshTree();
}

$("upload").addEventListener("change", (ev) => {
  upload([...ev.target.files]);
  ev.target.value = "";
});
const files = document.querySelector(".files");
files.addEventListener("dragover", (ev) => { ev.preventDefault(); files.classList.add("dropping"); });
files.addEventListener("dragleave", () => files.classList.remove("dropping"));
files.addEventListener("drop", (ev) => {
  ev.preventDefault();
  files.classList.remove("dropping");
  if (ev.dataTransfer?.files?.length) upload([...ev.dataTransfer.files]);
});

// ---------------------------------------------------------------- run

function languageOf(path) {
  const ext = path.split(".").pop();
  return state.languages.find((l) => l.extension === ext)?.name;
}

function appendOutput(text, cls) {
  const out = $("output");
  const last = out.lastChild;
  if (last && last.className === (cls ?? "") && last.nodeType === 1) {
    last.textContent += text;
  } else {
    const span = document.createElement("span");
    span.className = cls ?? "";
    span.textContent = text;
    out.append(span);
  }
  // Keep the pane bounded: a flood of output must not hang the tab.
  while (out.textContent.length > 400_000 && out.firstChild) out.firstChild.remove();
  out.scrollTop = out.scrollHeight;
}

function showError(e) {
  const message = e?.message ?? String(e);
  selectPanel("output");
  appendOutput(`${message}\n`, "error");
}

async function run() {
  const path = state.active;
  if (!path || state.run || state.status !== "ready") return;
  const language = languageOf(path);
  selectPanel("output");
  if (!language) {
    appendOutput(`replbox cannot run ${path}: open a .py, .js, .sh or .go file.\n`, "error");
    return;
  }
  await save(path);
  if (state.conflicts.has(path)) {
    // Running would use a copy the student does not see.
    appendOutput(`${path} was changed elsewhere: pick Reload or Keep mine above, then run.\n`, "error");
    return;
  }
  $("output").replaceChildren();
  appendOutput(`▶ ${path}\n`, "note");
  $("run").disabled = true;
  try {
    const f = await conn.request({ type: "run", language, entry: path });
    state.run = {
      job: f.job,
      decoders: { stdout: new TextDecoder(), stderr: new TextDecoder() },
      started: performance.now(),
      stopTimer: null,
    };
    $("stop").disabled = false;
    $("stop").textContent = "■ Stop";
    $("input").disabled = false;
    $("input").focus();
  } catch (e) {
    $("run").disabled = false;
    showError(e);
  }
}

function stop() {
  const run = state.run;
  if (!run) return;
  if (run.stopTimer === null) {
    conn.send({ type: "signal", job: run.job, signal: "interrupt" });
    $("stop").textContent = "■ Kill";
    run.stopTimer = setTimeout(() => {
      if (state.run === run) conn.send({ type: "signal", job: run.job, signal: "kill" });
    }, 1000);
  } else {
    conn.send({ type: "signal", job: run.job, signal: "kill" });
  }
}

function onOutput(job, seq, stream, bytes) {
  const last = state.lastSeq.get(job) ?? 0;
  if (seq <= last) return;
  state.lastSeq.set(job, seq);
  if (job === state.shellJob && term) {
    term.write(bytes);
    return;
  }
  if (state.run && job === state.run.job) {
    const decoder = state.run.decoders[stream === "stderr" ? "stderr" : "stdout"];
    appendOutput(decoder.decode(bytes, { stream: true }), stream === "stderr" ? "stderr" : "");
  }
}

function onEnd(f) {
  if (f.job === state.shellJob) {
    if (term) term.write("\r\n[the shell ended: press Enter for a new one]\r\n");
    state.shellJob = null;
    return;
  }
  if (!state.run || f.job !== state.run.job) return;
  if (f.type === "failed") {
    appendOutput(`${f.message}\n`, "error");
    finishRun();
    return;
  }
  const secs = (f.durationMs / 1000).toFixed(2);
  const how = f.code === 0 ? `finished in ${secs} s` : `${f.reason} after ${secs} s`;
  const code = f.code !== null ? ` (exit code ${f.code})` : "";
  appendOutput(`\n— ${how}${code}\n`, f.code === 0 ? "note" : "note bad");
  finishRun();
}

function finishRun(why) {
  if (why) appendOutput(`\n— ${why}\n`, "note bad");
  if (state.run?.stopTimer) clearTimeout(state.run.stopTimer);
  state.run = null;
  $("stop").disabled = true;
  $("stop").textContent = "■ Stop";
  $("input").disabled = true;
  $("run").disabled = !state.active || state.status !== "ready";
  refreshTree();
}

$("run").addEventListener("click", () => run());
$("stop").addEventListener("click", () => stop());
$("input-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  if (!state.run) return;
  const input = $("input");
  const line = `${input.value}\n`;
  conn.send({ type: "stdin", job: state.run.job, data: line });
  appendOutput(line, "stdin");
  input.value = "";
});
$("input").addEventListener("keydown", (ev) => {
  if (ev.key === "d" && ev.ctrlKey && state.run) {
    ev.preventDefault();
    conn.send({ type: "eof", job: state.run.job });
  }
});
document.addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey) && !ev.defaultPrevented) {
    ev.preventDefault();
    run();
  }
});

// ---------------------------------------------------------------- terminal

let term = null;
let fit = null;

let terminalLoading = null;

async function openTerminal() {
  if (term) return;
  if (!terminalLoading) terminalLoading = import("./terminal.js");
  const { Terminal, FitAddon } = await terminalLoading;
  if (term) return;
  const dark = window.matchMedia("(prefers-color-scheme: dark)").matches;
  term = new Terminal({
    fontFamily: "ui-monospace, SFMono-Regular, Menlo, Consolas, monospace",
    fontSize: 13,
    cursorBlink: true,
    scrollback: 5000,
    theme: dark ? { background: "#1e1e1e" } : { background: "#ffffff", foreground: "#1e1e1e", cursor: "#1e1e1e", selectionBackground: "#b4d5fe" },
  });
  fit = new FitAddon();
  term.loadAddon(fit);
  term.open($("terminal"));
  fit.fit();
  term.onData((data) => {
    if (state.shellJob === null) {
      if (data === "\r") startShell(true);
      return;
    }
    conn.sendStdin(state.shellJob, encoder.encode(data));
  });
  term.onResize(({ rows, cols }) => {
    if (state.shellJob !== null) conn.send({ type: "resize", job: state.shellJob, rows, cols });
  });
  new ResizeObserver(() => {
    if (!$("terminal-panel").hidden) fit.fit();
  }).observe($("terminal"));
  startShell();
}

async function startShell(fresh = false) {
  if (!term || !conn.open || state.status === "expired") return;
  try {
    const f = await conn.request({ type: "shell", rows: term.rows, cols: term.cols, new: fresh });
    if (state.shellJob !== null && state.shellJob !== f.job) term.write("\r\n[a new shell]\r\n");
    state.shellJob = f.job;
    // Scrollback the shell wrote while this tab was away (or before it).
    conn.send({ type: "replay", job: f.job, after: state.lastSeq.get(f.job) ?? 0 });
  } catch (e) {
    term.write(`\r\n[${e.message}]\r\n`);
  }
}

function selectPanel(which) {
  const terminal = which === "terminal";
  $("tab-output").setAttribute("aria-selected", String(!terminal));
  $("tab-terminal").setAttribute("aria-selected", String(terminal));
  $("output-panel").hidden = terminal;
  $("terminal-panel").hidden = !terminal;
  store.set("panel", which);
  if (terminal) {
    openTerminal().then(() => requestAnimationFrame(() => { fit.fit(); term.focus(); }));
  }
}

$("tab-output").addEventListener("click", () => selectPanel("output"));
$("tab-terminal").addEventListener("click", () => selectPanel("terminal"));

// ---------------------------------------------------------------- exercises

async function check() {
  const pane = $("results");
  const button = $("check");
  button.disabled = true;
  pane.replaceChildren(Object.assign(document.createElement("p"), { textContent: "Checking your work…" }));
  try {
    await Promise.all([...state.dirty].map((p) => save(p)));
    const r = await fetch(`/class/exercises/${encodeURIComponent(exercise)}/check`, {
      method: "POST", headers: { "content-type": "application/json" }, body: "{}",
    });
    const body = await r.json();
    if (!r.ok) throw new Error(body.error?.message ?? `check failed (${r.status})`);
    const { report } = body;
    const head = document.createElement("h2");
    head.className = "score";
    head.textContent = `Score: ${report.score} / ${report.maxScore}`;
    const list = document.createElement("ul");
    for (const t of report.tests) {
      const li = document.createElement("li");
      li.className = t.passed ? "pass" : "fail";
      li.append(`${t.passed ? "✔" : "✘"} ${t.name} (${t.points}/${t.maxPoints})`);
      if (!t.passed) {
        li.append(Object.assign(document.createElement("div"), { className: "reason", textContent: t.reason }));
        for (const [label, text] of [["expected", t.expected], ["got", t.got]]) {
          if (text === null || text === undefined) continue;
          const pre = document.createElement("pre");
          pre.dataset.label = label;
          pre.textContent = text;
          li.append(Object.assign(document.createElement("div"), { className: "label", textContent: label }), pre);
        }
      }
      list.append(li);
    }
    pane.replaceChildren(head, list);
  } catch (e) {
    pane.replaceChildren(Object.assign(document.createElement("p"), { className: "error", textContent: e.message }));
  } finally {
    button.disabled = false;
  }
}

if (exercise) {
  $("check").addEventListener("click", () => check());
  highlightPrompt();
}

async function highlightPrompt() {
  const { highlightCode, classHighlighter } = await import("@lezer/highlight");
  const { languageFor } = await import("./editor.js");
  for (const code of document.querySelectorAll(".prompt pre code[class^='language-']")) {
    const lang = languageFor(`x.${code.className.replace("language-", "").replace(/^python$/, "py").replace(/^javascript$/, "js").replace(/^(bash|shell)$/, "sh")}`);
    const parser = lang?.language?.parser ?? lang?.parser;
    if (!parser) continue;
    const text = code.textContent;
    const out = document.createDocumentFragment();
    highlightCode(text, parser.parse(text), classHighlighter,
      (t, cls) => out.append(cls ? Object.assign(document.createElement("span"), { className: cls, textContent: t }) : t),
      () => out.append("\n"));
    code.replaceChildren(out);
  }
}

// ---------------------------------------------------------------- start

renderTabs();
conn.connect();
if (store.get("panel", "output") === "terminal") {
  // Open once connected, so the shell can be re-attached.
  const wait = setInterval(() => {
    if (conn.open && state.status === "ready") {
      clearInterval(wait);
      selectPanel("terminal");
    }
  }, 50);
}
