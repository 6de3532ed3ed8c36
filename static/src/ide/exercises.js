// An exercise's page: Check and its report, the prompt's code highlighted.

import { $, exercise, state } from "./store.js";
import { save } from "./tabs.js";

export async function check() {
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

export async function highlightPrompt() {
  const { highlightCode, classHighlighter } = await import("@lezer/highlight");
  const { languageFor } = await import("../editor.js");
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
