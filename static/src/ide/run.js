// Run: the output pane, a run's input, stop, and its end.

import { conn } from "./status.js";
import { $, state } from "./store.js";
import { save } from "./tabs.js";
import { selectPanel, term } from "./terminal.js";
import { refreshTree } from "./tree.js";

export function languageOf(path) {
  const ext = path.split(".").pop();
  return state.languages.find((l) => l.extension === ext)?.name;
}

export function appendOutput(text, cls) {
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

export function showError(e) {
  const message = e?.message ?? String(e);
  selectPanel("output");
  appendOutput(`${message}\n`, "error");
}

export async function run() {
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

export function stop() {
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

export function onOutput(job, seq, stream, bytes) {
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

export function onEnd(f) {
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

export function finishRun(why) {
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
