// The terminal panel: xterm.js loaded on first use, and the sandbox's shell.

import { conn } from "./status.js";
import { $, state, store } from "./store.js";

export const encoder = new TextEncoder();

export let term = null;
export let fit = null;

export let terminalLoading = null;

export async function openTerminal() {
  if (term) return;
  if (!terminalLoading) terminalLoading = import("../terminal.js");
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

export async function startShell(fresh = false) {
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

export function selectPanel(which) {
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
