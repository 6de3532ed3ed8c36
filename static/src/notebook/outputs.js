// A cell's outputs and a Markdown cell as the page shows them. Nothing a
// kernel or a notebook file sends runs with the page's rights: Markdown is
// sanitized, HTML goes into a sandboxed frame with an opaque origin.

import { marked } from "marked";
import DOMPurify from "dompurify";

const ANSI = /\x1b\[[0-9;]*m/g;

// The element for one nbformat output (a stream's text list is joined in
// place, so later stream text appends to a string).
export function outputElement(o) {
  let el;
  if (o.output_type === "stream") {
    if (Array.isArray(o.text)) o.text = o.text.join("");
    el = document.createElement("pre");
    el.className = `stream ${o.name}`;
    el.textContent = o.text;
  } else if (o.output_type === "error") {
    el = document.createElement("pre");
    el.className = "error";
    el.textContent = (o.traceback ?? [`${o.ename}: ${o.evalue}`]).join("\n").replace(ANSI, "");
  } else {
    const d = o.data ?? {};
    const text = (k) => (Array.isArray(d[k]) ? d[k].join("") : d[k]);
    if (d["image/png"]) {
      el = document.createElement("img");
      el.src = `data:image/png;base64,${text("image/png").replace(/\s/g, "")}`;
      el.alt = text("text/plain") ?? "plot";
    } else if (d["image/svg+xml"]) {
      el = document.createElement("img");
      el.src = `data:image/svg+xml;base64,${btoa(unescape(encodeURIComponent(text("image/svg+xml"))))}`;
      el.alt = text("text/plain") ?? "figure";
    } else if (d["text/html"]) {
      // Kernel HTML never runs with the page's rights: a sandboxed frame
      // with no scripts and an opaque origin.
      el = document.createElement("iframe");
      el.className = "html-output";
      el.setAttribute("sandbox", "");
      el.title = "HTML output";
      el.srcdoc = `<!doctype html><meta charset="utf-8"><style>body{font:13px system-ui,sans-serif;margin:4px}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}</style>${text("text/html")}`;
    } else {
      el = document.createElement("pre");
      el.className = "result";
      el.textContent = text("text/plain") ?? "";
    }
  }
  return el;
}

// DOMPurify removes scripts, handlers and javascript: URLs; <style> and
// forms it keeps by default, and a notebook's Markdown has no need to
// restyle the page or post anywhere.
export function markdownHtml(text) {
  return DOMPurify.sanitize(marked.parse(text), { FORBID_TAGS: ["style", "form"] });
}
