// The notebook page: cells run in a Jupyter kernel inside the sandbox
// (docs/protocol.md, kernel.* frames); the notebook is an .ipynb
// (nbformat 4) in /workspace, saved shortly after each change and on Ctrl+S
// (notebook/file.js); outputs are drawn by notebook/outputs.js.

import { EditorState, Prec } from "@codemirror/state";
import { EditorView, keymap, lineNumbers } from "@codemirror/view";
import { defaultKeymap, history, historyKeymap, indentWithTab } from "@codemirror/commands";
import { syntaxHighlighting, defaultHighlightStyle, bracketMatching } from "@codemirror/language";
import { autocompletion, startCompletion, completionStatus } from "@codemirror/autocomplete";
import { python } from "@codemirror/lang-python";
import { Connection } from "./connection.js";
import { NotebookFile, cellsOf, toNotebook } from "./notebook/file.js";
import { markdownHtml, outputElement } from "./notebook/outputs.js";
import "./notebook.css";

const $ = (id) => document.getElementById(id);
const path = decodeURIComponent(document.body.dataset.path);
let kernel = null;
let ready = null;
let counter = 0;
const pending = new Map(); // msgId -> { cell, done }
const cells = [];

const conn = new Connection("/ws", {
  onOpen: () => status("connected"),
  onClose: () => status("reconnecting…"),
  onFrame: (f) => onFrame(f),
});
const file = new NotebookFile(conn, path, () => JSON.stringify(toNotebook(cells, source), null, 1) + "\n");
const scheduleSave = () => file.scheduleSave();
const save = (force) => file.save(force);
let loaded = false;

function status(text) {
  $("kernel-status").textContent = text;
}

function newId() {
  return Math.random().toString(36).slice(2, 10);
}

// ------------------------------------------------------------ kernel

function startKernel() {
  status("starting kernel…");
  let resolveReady;
  ready = new Promise((r) => { resolveReady = r; });
  ready.resolve = resolveReady;
  conn.send({ type: "kernel.start", ref: "kernel" });
}

function onFrame(f) {
  if (f.type === "hello") {
    if (!loaded) load();
    const running = f.jobs.find((j) => j.kind === "kernel" && j.running);
    if (kernel === null) startKernel();
    else if (!running) startKernel();
    return;
  }
  if (f.type === "started" && f.kind === "kernel" && f.ref === "kernel") {
    kernel = f.job;
    return;
  }
  if (f.type === "kernel.ready" && f.kernel === kernel) {
    status("idle");
    ready.resolve();
    return;
  }
  if (f.type === "exit" && f.job === kernel) {
    status(`dead: ${f.reason}`);
    document.body.dataset.kernel = "dead";
    for (const [, p] of pending) p.done?.(false);
    pending.clear();
    kernel = null;
    return;
  }
  if (f.type !== "kernel.message" || f.kernel !== kernel) return;
  const p = pending.get(f.parentMsgId);
  if (f.msgType === "status") {
    status(f.content.execution_state);
    document.body.dataset.kernel = f.content.execution_state;
    // The kernel's own channel says when a request's outputs are all out.
    if (p?.cell && f.content.execution_state === "idle") settle(f.parentMsgId, p, "idle");
    return;
  }
  if (!p) return;
  if (p.complete) {
    if (f.msgType === "complete_reply") p.complete(f.content);
    return;
  }
  const cell = p.cell;
  const c = f.content;
  switch (f.msgType) {
    case "execute_input":
      cell.execution_count = c.execution_count;
      renderPrompt(cell);
      break;
    case "stream":
      addOutput(cell, { output_type: "stream", name: c.name, text: c.text });
      break;
    case "execute_result":
      addOutput(cell, { output_type: "execute_result", execution_count: c.execution_count, data: c.data, metadata: c.metadata ?? {} });
      break;
    case "display_data":
      addOutput(cell, { output_type: "display_data", data: c.data, metadata: c.metadata ?? {} });
      break;
    case "error":
      addOutput(cell, { output_type: "error", ename: c.ename, evalue: c.evalue, traceback: c.traceback });
      break;
    case "execute_reply":
      p.ok = c.status === "ok";
      settle(f.parentMsgId, p, "reply");
      break;
    default:
      break;
  }
}

// A cell is done when both its reply (shell channel) and the kernel's idle
// status for it (iopub, after its last output) have come: the two channels
// are not ordered against each other, so an output may follow the reply.
function settle(msgId, p, what) {
  p[what] = true;
  if (!(p.reply && p.idle)) return;
  pending.delete(msgId);
  p.done(p.ok === true);
}

// ------------------------------------------------------------ cells

function source(cell) {
  return cell.view ? cell.view.state.doc.toString() : cell.source;
}

function kernelCompletions(context) {
  if (kernel === null) return null;
  const word = context.matchBefore(/[\w.]*/);
  if (!context.explicit && (!word || word.from === word.to)) return null;
  const msgId = `c${++counter}`;
  return new Promise((resolve) => {
    const timer = setTimeout(() => { pending.delete(msgId); resolve(null); }, 3000);
    pending.set(msgId, {
      complete: (c) => {
        clearTimeout(timer);
        pending.delete(msgId);
        resolve({
          from: [...context.state.doc.sliceString(0, c.cursor_start)].length === c.cursor_start ? c.cursor_start : word.from,
          to: c.cursor_end,
          options: c.matches.map((m) => ({ label: m })),
        });
      },
    });
    conn.send({ type: "kernel.complete", kernel, msgId, code: context.state.doc.toString(), cursorPos: context.pos });
  });
}

function makeEditor(cell, parent) {
  const runKeys = Prec.highest(keymap.of([
    { key: "Shift-Enter", run: () => { runCell(cell, true); return true; } },
    { key: "Mod-Enter", run: () => { runCell(cell, false); return true; } },
    { key: "Mod-s", run: () => { save(); return true; }, preventDefault: true },
    {
      key: "Tab",
      run: (view) => {
        if (completionStatus(view.state) !== null) return false;
        const before = view.state.sliceDoc(Math.max(0, view.state.selection.main.head - 1), view.state.selection.main.head);
        if (/[\w.]/.test(before)) return startCompletion(view);
        return false;
      },
    },
  ]));
  cell.view = new EditorView({
    parent,
    state: EditorState.create({
      doc: cell.source,
      extensions: [
        runKeys, lineNumbers(), history(), bracketMatching(),
        syntaxHighlighting(defaultHighlightStyle, { fallback: true }),
        cell.cell_type === "code" ? python() : [],
        cell.cell_type === "code" ? autocompletion({ override: [kernelCompletions], activateOnTyping: false }) : [],
        keymap.of([...defaultKeymap, ...historyKeymap, indentWithTab]),
        EditorView.updateListener.of((u) => { if (u.docChanged) scheduleSave(); }),
        EditorView.contentAttributes.of({ "aria-label": cell.cell_type === "code" ? "Code cell" : "Markdown cell" }),
      ],
    }),
  });
}

function renderPrompt(cell) {
  cell.prompt.textContent = cell.cell_type === "code" ? `[${cell.execution_count ?? " "}]` : "";
}

function renderMarkdown(cell) {
  cell.rendered.innerHTML = markdownHtml(source(cell));
  cell.rendered.hidden = false;
  cell.editorBox.hidden = true;
}

function renderCell(cell) {
  const box = document.createElement("section");
  box.className = `cell ${cell.cell_type}`;
  box.tabIndex = -1;
  cell.box = box;
  cell.prompt = document.createElement("div");
  cell.prompt.className = "prompt-count";
  renderPrompt(cell);
  cell.editorBox = document.createElement("div");
  cell.editorBox.className = "cell-editor";
  cell.rendered = document.createElement("div");
  cell.rendered.className = "markdown";
  cell.rendered.hidden = true;
  cell.rendered.addEventListener("dblclick", () => { cell.rendered.hidden = true; cell.editorBox.hidden = false; cell.view.focus(); });
  cell.outputBox = document.createElement("div");
  cell.outputBox.className = "outputs";
  cell.outputBox.setAttribute("aria-live", "polite");
  box.append(cell.prompt, cell.editorBox, cell.rendered, cell.outputBox);
  box.addEventListener("focusin", () => select(cell));
  makeEditor(cell, cell.editorBox);
  for (const o of cell.outputs) renderOutput(cell, o);
  if (cell.cell_type === "markdown" && cell.source.trim()) renderMarkdown(cell);
  return box;
}

function select(cell) {
  for (const c of cells) c.box.classList.toggle("selected", c === cell);
  selected = cell;
}
let selected = null;

function addOutput(cell, o) {
  // Consecutive stream text of one stream joins one output, as Jupyter does.
  const last = cell.outputs[cell.outputs.length - 1];
  if (o.output_type === "stream" && last?.output_type === "stream" && last.name === o.name) {
    last.text += o.text;
    last.el.textContent = last.text;
  } else {
    cell.outputs.push(o);
    renderOutput(cell, o);
  }
  scheduleSave();
}

function renderOutput(cell, o) {
  o.el = outputElement(o);
  cell.outputBox.append(o.el);
}

function runCell(cell, advance) {
  if (cell.cell_type === "markdown") {
    renderMarkdown(cell);
    scheduleSave();
    if (advance) nextCell(cell);
    return Promise.resolve(true);
  }
  cell.outputs = [];
  cell.outputBox.replaceChildren();
  cell.prompt.textContent = "[*]";
  const msgId = `x${++counter}-${newId()}`;
  const done = new Promise((resolve) => {
    pending.set(msgId, { cell, done: resolve });
  });
  ready.then(() => conn.send({ type: "kernel.execute", kernel, msgId, code: source(cell) }));
  if (advance) nextCell(cell);
  return done.then((ok) => { renderPrompt(cell); scheduleSave(); return ok; });
}

function nextCell(cell) {
  const i = cells.indexOf(cell);
  if (i === cells.length - 1) addCell("code", i + 1);
  else cells[i + 1].view.focus();
}

function addCell(type, at = cells.length, sourceText = "") {
  const cell = { id: newId(), cell_type: type, source: sourceText, outputs: [], execution_count: null };
  cells.splice(at, 0, cell);
  const box = renderCell(cell);
  const list = $("cells");
  list.insertBefore(box, list.children[at] ?? null);
  cell.view.focus();
  scheduleSave();
  return cell;
}

function move(delta) {
  if (!selected) return;
  const i = cells.indexOf(selected);
  const j = i + delta;
  if (j < 0 || j >= cells.length) return;
  cells.splice(i, 1);
  cells.splice(j, 0, selected);
  const list = $("cells");
  list.insertBefore(selected.box, delta < 0 ? cells[j + 1].box : cells[j - 1].box.nextSibling);
  selected.view.focus();
  scheduleSave();
}

function remove() {
  if (!selected) return;
  const i = cells.indexOf(selected);
  cells.splice(i, 1);
  selected.box.remove();
  selected = null;
  if (cells.length === 0) addCell("code");
  else cells[Math.min(i, cells.length - 1)].view.focus();
  scheduleSave();
}

// ------------------------------------------------------------ file

async function load() {
  loaded = true;
  let nb;
  try {
    nb = await file.read();
  } catch (e) {
    status(`cannot open ${path}: ${e.message}`);
    return;
  }
  const list = $("cells");
  list.replaceChildren();
  cells.length = 0;
  for (const cell of cellsOf(nb, newId)) {
    cells.push(cell);
    list.append(renderCell(cell));
  }
  if (cells.length === 0) addCell("code");
  document.body.dataset.loaded = "true";
}

// ------------------------------------------------------------ toolbar

$("run-cell").addEventListener("click", () => selected && runCell(selected, false));
$("run-all").addEventListener("click", async () => {
  for (const c of [...cells]) {
    if (!(await runCell(c, false)) && c.cell_type === "code") break;
  }
});
$("interrupt").addEventListener("click", () => kernel !== null && conn.send({ type: "kernel.interrupt", kernel }));
$("restart").addEventListener("click", () => {
  if (kernel !== null) conn.send({ type: "kernel.shutdown", kernel });
  kernel = null;
  for (const [, p] of pending) p.done?.(false);
  pending.clear();
  startKernel();
});
$("add-code").addEventListener("click", () => addCell("code", selected ? cells.indexOf(selected) + 1 : cells.length));
$("add-markdown").addEventListener("click", () => addCell("markdown", selected ? cells.indexOf(selected) + 1 : cells.length));
$("move-up").addEventListener("click", () => move(-1));
$("move-down").addEventListener("click", () => move(1));
$("delete-cell").addEventListener("click", () => remove());
$("save").addEventListener("click", () => save());
document.addEventListener("keydown", (ev) => {
  if (ev.key === "s" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); save(); }
});

conn.connect();
