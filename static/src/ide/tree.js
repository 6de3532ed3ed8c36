// The file tree: listing, the welcome files, opening folders, new files
// and folders, rename, delete, upload.

import { ask, confirmDialog } from "../dialog.js";
import { showError } from "./run.js";
import { conn, markReady } from "./status.js";
import { $, exercise, state, store } from "./store.js";
import { closeTab, editor, openFile, persistTabs, renamedPath, renderTabs, save } from "./tabs.js";

export const WELCOME = {
  "main.py": 'name = input("What is your name? ")\nprint(f"Hello, {name}! Welcome to replbox.")\n',
  "main.js": 'const greet = (who) => `Hello, ${who}!`;\nconsole.log(greet("JavaScript"));\n',
  "main.sh": '#!/bin/bash\nfor lang in Python JavaScript Bash Go; do\n    echo "replbox runs $lang"\ndone\n',
  "main.go": 'package main\n\nimport "fmt"\n\nfunc main() {\n\tfmt.Println("Hello from Go!")\n}\n',
};

export function joinPath(dir, name) {
  return dir ? `${dir}/${name}` : name;
}

export function dirOf(path) {
  const i = path.lastIndexOf("/");
  return i < 0 ? "" : path.slice(0, i);
}

export async function list(dir) {
  // The first listing of the root was asked for by boot.js.
  const early = dir === "" ? conn.earlyList : undefined;
  conn.earlyList = undefined;
  const f = await (early ?? conn.request({ type: "file.list", path: dir }));
  const entries = f.entries.filter((e) => !e.name.startsWith("."));
  entries.sort((a, b) => (a.kind === "dir") === (b.kind === "dir") ? a.name.localeCompare(b.name) : a.kind === "dir" ? -1 : 1);
  state.tree.set(dir, entries);
  return entries;
}

export async function refreshTree() {
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

export async function loadWorkspace() {
  try {
    const root = await list("");
    if (!exercise && root.length === 0 && !store.get("welcomed", false)) {
      // All at once: one round trip, not one per file. What was written is
      // known here: main.py opens from it, not from another read, and the
      // tree is listed again off the way to ready.
      const written = await Promise.all(Object.entries(WELCOME).map(([path, text]) =>
        conn.request({ type: "file.write", path, data: text }).then((f) => [path, text, f.version])));
      store.set("welcomed", true);
      for (const [path, , version] of written) state.versions.set(path, version);
      editor.seed("main.py", WELCOME["main.py"]);
      state.tree.set("", Object.entries(WELCOME).map(([name, text]) => ({ name, kind: "file", size: text.length }))
        .sort((a, b) => a.name.localeCompare(b.name)));
      refreshTree();
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

export function renderTree() {
  const root = $("tree");
  root.replaceChildren(...renderEntries(""));
}

export function renderEntries(dir) {
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

export async function select(path, kind) {
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

export function selectedDir() {
  const sel = state.selected;
  if (!sel) return "";
  const entry = (state.tree.get(dirOf(sel)) ?? []).find((e) => joinPath(dirOf(sel), e.name) === sel);
  return entry?.kind === "dir" ? sel : dirOf(sel);
}

export const EMPTY_NOTEBOOK = JSON.stringify({
  cells: [], metadata: { kernelspec: { name: "python3", display_name: "Python 3 (ipykernel)", language: "python" } },
  nbformat: 4, nbformat_minor: 5,
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

export async function renameSelected() {
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

export async function deleteSelected() {
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

export function toBase64(buffer) {
  const bytes = new Uint8Array(buffer);
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

export async function upload(files) {
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
export const files = document.querySelector(".files");
files.addEventListener("dragover", (ev) => { ev.preventDefault(); files.classList.add("dropping"); });
files.addEventListener("dragleave", () => files.classList.remove("dropping"));
files.addEventListener("drop", (ev) => {
  ev.preventDefault();
  files.classList.remove("dropping");
  if (ev.dataTransfer?.files?.length) upload([...ev.dataTransfer.files]);
});
