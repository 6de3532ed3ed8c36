// Open files: the editor, tabs, saving (with versions and drafts), and
// the bar shown when a file changed elsewhere.

import { Editor } from "../editor.js";
import { run, showError } from "./run.js";
import { conn } from "./status.js";
import { $, state, store } from "./store.js";
import { refreshTree, renderTree } from "./tree.js";

export const editor = new Editor($("editor"), {
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

/// The text of a `file` frame (base64 for bytes that are not UTF-8).
export function fileText(f) {
  return f.encoding === "base64" ? atob(f.data) : f.data;
}

/// Where `p` is once `from` is renamed to `to` (it, or a path inside it),
/// or null when the rename does not touch it.
export function renamedPath(p, from, to) {
  return p === from || p.startsWith(`${from}/`) ? to + p.slice(from.length) : null;
}

export async function openFile(path, { quiet = false, focus = true } = {}) {
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

export function persistTabs() {
  store.set("tabs", state.tabs);
  store.set("active", state.active);
}

export function renderTabs() {
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
export function renderConflict() {
  const path = state.active;
  const on = !!path && state.conflicts.has(path);
  $("conflict").hidden = !on;
  if (on) $("conflict-text").textContent = `${path} was changed in another tab or by a program since you opened it.`;
}

/// Reload: the copy on disk replaces this tab's (still undoable).
export async function reloadConflicted() {
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

export async function closeTab(path) {
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
export async function save(path, { force = false } = {}) {
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
