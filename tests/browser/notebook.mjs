// The notebook page in Debian's Chromium: New notebook from the tree,
// cells in a kernel with their execution counts, a table, a PNG plot and an
// SVG figure, HTML that may not run scripts, completion on Tab, stdout and
// stderr as they stream, interrupt, add/move/delete cells, Markdown
// rendered and sanitised, restart (the notebook kept), save, Keep mine and
// Reload on a conflict; and a notebook made by Jupyter opened and run.
// Usage: node notebook.mjs <base-url> <fixture.ipynb> <artifacts-dir>
import { createRequire } from "node:module";
import fs from "node:fs";
import path from "node:path";

const require = createRequire(new URL("../../static/package.json", import.meta.url));
const { chromium } = require("playwright-core");
const [base, fixture, artifacts = "test-artifacts"] = process.argv.slice(2);
fs.mkdirSync(artifacts, { recursive: true });

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic"],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
const page = await context.newPage();
const logs = [];
page.on("console", (m) => logs.push(`[console.${m.type()}] ${m.text()}`));
page.on("pageerror", (e) => logs.push(`[pageerror] ${e.message}`));
const step = (s) => console.log(`  - ${s}`);
// Kernels import pandas and matplotlib on first use: give rich output time.
page.setDefaultTimeout(90_000);

async function idle() {
  await page.waitForFunction(() => document.querySelector("#kernel-status").textContent === "idle", null, { timeout: 60_000 });
}

async function typeCell(code) {
  await page.keyboard.insertText(code);
  await page.keyboard.press("Shift+Enter");
}

/// Waits until the cells' prompts read exactly `want` (one per cell).
async function waitPrompts(want) {
  try {
    await page.waitForFunction((w) => JSON.stringify([...document.querySelectorAll(".cell .prompt-count")].map((p) => p.textContent)) === JSON.stringify(w), want, { timeout: 30_000 });
  } catch (e) {
    const got = await page.evaluate(() => [...document.querySelectorAll(".cell .prompt-count")].map((p) => p.textContent));
    throw new Error(`prompts ${JSON.stringify(got)}, wanted ${JSON.stringify(want)}`);
  }
}

async function lastOutputs(n) {
  return page.locator(".cell").nth(n).locator(".outputs");
}

try {
  await page.goto(base);
  await page.waitForSelector('body[data-ready="true"]', { timeout: 60_000 });

  step("New notebook from the file tree opens it on its own page");
  await page.click("#new-notebook");
  await page.fill("#dialog-input", "analysis");
  await page.press("#dialog-input", "Enter");
  await page.waitForURL(/notebook\/analysis\.ipynb$/);
  await page.waitForSelector('body[data-loaded="true"]');
  await idle();
  if ((await page.locator(".cell").count()) !== 1) throw new Error("a new notebook does not start with one empty cell");

  step("state carries from cell to cell; execution counts number the runs");
  await page.click(".cell .cm-content");
  await typeCell("x = 41");
  await typeCell("x + 1");
  await page.waitForFunction(() => document.querySelectorAll(".cell")[1]?.querySelector(".outputs pre.result")?.textContent === "42");
  await waitPrompts(["[1]", "[2]", "[ ]"]); // Shift+Enter made a new, empty cell

  step("a DataFrame renders as a table, a plot as an image");
  await typeCell('import pandas as pd\npd.DataFrame({"a": [1, 2], "b": [3, 4]})');
  await (await lastOutputs(2)).locator("iframe.html-output").waitFor();
  const frame = page.frames().find((f) => f !== page.mainFrame());
  await frame.waitForSelector("table");
  await typeCell("import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.show()");
  await (await lastOutputs(3)).locator('img[src^="data:image/png"]').waitFor();

  step("HTML from the kernel cannot run scripts in the page");
  await typeCell('from IPython.display import HTML\nHTML("<b id=bold>bold</b><script>window.parent.pwned = 1; document.body.append(\'ran\')</script>")');
  await (await lastOutputs(4)).locator("iframe.html-output").waitFor();
  const sandbox = await (await lastOutputs(4)).locator("iframe").getAttribute("sandbox");
  if (sandbox !== "") throw new Error(`iframe sandbox: ${sandbox}`);
  // The frame's document has loaded (its inline script would have run by then).
  const htmlFrame = await (await (await lastOutputs(4)).locator("iframe").elementHandle()).contentFrame();
  await htmlFrame.waitForSelector("#bold");
  await htmlFrame.waitForLoadState("load");
  const framed = await htmlFrame.locator("body").innerText(); // what shows: no script source
  if (framed !== "bold") throw new Error(`a kernel script ran in its frame: ${framed}`);
  if ((await page.evaluate(() => window.pwned)) !== undefined) throw new Error("a kernel script ran in the page");

  step("completion on Tab");
  await typeCell("import math");
  await page.keyboard.insertText("math.facto");
  await page.keyboard.press("Tab");
  // Picked with the mouse: CodeMirror ignores Enter for its first 75 ms
  // after the list opens (against accidental picks), and a test under load
  // can press it sooner than any student does.
  await page.locator(".cm-tooltip-autocomplete li", { hasText: "factorial" }).first().click({ timeout: 10_000 });
  await page.waitForFunction(() => document.querySelectorAll(".cell")[6]?.querySelector(".cm-content")?.textContent.includes("math.factorial"));
  const text = await page.locator(".cell").nth(6).locator(".cm-content").textContent();
  if (!text.includes("math.factorial")) throw new Error(`completed to ${text}`);
  await page.keyboard.insertText("(5)");
  await page.keyboard.press("Shift+Enter");
  await page.waitForFunction(() => document.querySelectorAll(".cell")[6]?.querySelector("pre.result")?.textContent === "120");

  step("stdout and stderr show while the cell still runs, stderr told apart");
  // The loop never ends by itself: whatever shows before the interrupt
  // streamed while the cell ran.
  await typeCell('import sys\nprint("to stdout", flush=True)\nprint("to stderr", file=sys.stderr, flush=True)\nwhile True: pass');
  await page.waitForFunction(() => {
    const out = document.querySelectorAll(".cell")[7]?.querySelector(".outputs");
    return out?.querySelector("pre.stream.stdout")?.textContent === "to stdout\n"
      && out?.querySelector("pre.stream.stderr")?.textContent === "to stderr\n";
  });
  const running = await page.evaluate(() => ({
    kernel: document.body.dataset.kernel,
    errors: document.querySelectorAll(".cell")[7].querySelectorAll("pre.error").length,
    out: getComputedStyle(document.querySelector(".cell:nth-child(8) pre.stream.stdout")).color,
    err: getComputedStyle(document.querySelector(".cell:nth-child(8) pre.stream.stderr")).color,
  }));
  if (running.kernel !== "busy" || running.errors !== 0) throw new Error(`the cell is not running: ${JSON.stringify(running)}`);
  if (running.out === running.err) throw new Error(`stderr looks like stdout: ${running.err}`);

  step("interrupt stops the busy loop within a second");
  const t0 = Date.now();
  await page.click("#interrupt");
  await page.waitForFunction(() => document.querySelectorAll(".cell")[7].querySelector(".outputs pre.error")?.textContent.includes("KeyboardInterrupt"));
  const took = Date.now() - t0;
  console.log(`    interrupted in ${took} ms`);
  if (took > 1000) throw new Error(`interrupt took ${took} ms`);

  step("an SVG figure shows inline");
  await page.locator(".cell").nth(8).locator(".cm-content").click();
  await typeCell('from IPython.display import SVG\nSVG(\'<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20"><rect width="40" height="20" fill="red"/></svg>\')');
  const svg = (await lastOutputs(8)).locator('img[src^="data:image/svg+xml"]');
  await svg.waitFor();
  await page.waitForFunction(() => {
    const img = document.querySelectorAll(".cell")[8].querySelector(".outputs img");
    return img.complete && img.naturalWidth === 40 && img.naturalHeight === 20;
  });
  await idle();
  await waitPrompts(["[1]", "[2]", "[3]", "[4]", "[5]", "[6]", "[7]", "[8]", "[9]", "[ ]"]);

  step("cells are added, moved and deleted; Markdown is rendered and sanitised");
  // Cell 9 is the empty code cell Shift+Enter made; a Markdown cell goes after it.
  await page.click("#add-markdown");
  await page.waitForFunction(() => document.querySelectorAll(".cell").length === 11 && document.querySelectorAll(".cell")[10].classList.contains("markdown"));
  await page.keyboard.insertText([
    "# Results", "", "Some **bold** text, `code` and a [link](https://example.org/).", "", "- one", "- two", "",
    '<img id="bad-img" src="missing.png" onerror="window.pwned = 2">',
    "<script>window.pwned = 3</script>",
    '<a id="js-link" href="javascript:window.pwned = 4">click</a>',
    '<iframe id="frame" srcdoc="<script>parent.pwned = 5</script>"></iframe>',
    '<div id="hover" onmouseover="window.pwned = 6">hover</div>',
    '<form id="form" action="javascript:window.pwned = 7"><input type="submit" id="submit"></form>',
    '<style>body { display: none }</style>',
    '<div id="overlay" style="position: fixed; inset: 0; z-index: 99">a fake page over the real one</div>',
  ].join("\n"));
  await page.click("#move-up");
  await page.waitForFunction(() => document.querySelectorAll(".cell")[9].classList.contains("markdown") && !document.querySelectorAll(".cell")[10].classList.contains("markdown"));
  await page.click("#move-down");
  await page.waitForFunction(() => document.querySelectorAll(".cell")[10].classList.contains("markdown"));
  await page.click("#move-up");
  await page.waitForFunction(() => document.querySelectorAll(".cell")[9].classList.contains("markdown"));
  await page.keyboard.press("Shift+Enter"); // renders it, moves to the code cell below
  // Attached, not visible: a <style> let through would hide the whole page.
  await page.locator(".cell").nth(9).locator(".markdown h1").waitFor({ state: "attached" });
  // The image that cannot load has failed (its handler would have run by now).
  await page.waitForFunction(() => { const i = document.querySelector(".cell .markdown img"); return i && i.complete; });
  await page.dispatchEvent(".cell .markdown #hover", "mouseover");
  const rendered = await page.evaluate(() => {
    const box = document.querySelectorAll(".cell")[9].querySelector(".markdown");
    return {
      h1: box.querySelector("h1")?.textContent, bold: box.querySelector("strong")?.textContent,
      code: box.querySelector("code")?.textContent, items: box.querySelectorAll("li").length,
      link: box.querySelector('a[href="https://example.org/"]')?.textContent,
      scripts: box.querySelectorAll("script, iframe, style, form").length,
      handlers: [...box.querySelectorAll("*")].flatMap((e) => [...e.attributes].map((a) => a.name)).filter((n) => n.startsWith("on")),
      jsUrls: [...box.querySelectorAll("[href], [action], [src]")].map((e) => e.getAttribute("href") ?? e.getAttribute("action") ?? e.getAttribute("src")).filter((u) => /^\s*javascript:/i.test(u)),
      hidden: getComputedStyle(document.body).display === "none",
      // Inline styles stay, but nothing leaves the cell's box to cover the page.
      contained: (() => {
        const o = box.querySelector("#overlay").getBoundingClientRect();
        const b = box.getBoundingClientRect();
        return o.left >= b.left && o.right <= b.right && o.top >= b.top && o.bottom <= b.bottom
          && document.elementFromPoint(5, 5)?.closest(".markdown") == null;
      })(),
    };
  });
  const wanted = { h1: "Results", bold: "bold", code: "code", items: 2, link: "link", scripts: 0, handlers: [], jsUrls: [], hidden: false, contained: true };
  if (JSON.stringify(rendered) !== JSON.stringify(wanted)) throw new Error(`markdown: ${JSON.stringify(rendered)}`);
  if ((await page.evaluate(() => window.pwned)) !== undefined) throw new Error(`markdown ran a script: ${await page.evaluate(() => window.pwned)}`);
  await page.waitForFunction(() => document.querySelectorAll(".cell")[10].classList.contains("selected"));
  await page.click("#delete-cell");
  await page.waitForFunction(() => document.querySelectorAll(".cell").length === 10);
  await page.click("#add-code");
  await page.waitForFunction(() => document.querySelectorAll(".cell").length === 11 && document.querySelectorAll(".cell")[10].classList.contains("code"));

  step("restart clears the state, the notebook is kept");
  const cellsNow = () => page.evaluate(() => [...document.querySelectorAll(".cell")].map((c) => [c.className.replace(" selected", ""), c.querySelector(".cm-content").textContent, c.querySelector(".outputs").textContent]));
  const before = await cellsNow();
  await page.click("#restart");
  await idle();
  const afterRestart = await cellsNow();
  if (JSON.stringify(afterRestart) !== JSON.stringify(before)) throw new Error(`restart changed the notebook: ${JSON.stringify(afterRestart)}`);
  await page.locator(".cell").nth(10).locator(".cm-content").click();
  await typeCell("x");
  await page.waitForFunction(() => document.querySelectorAll(".cell")[10].querySelector(".outputs pre.error")?.textContent.includes("NameError"));
  await page.waitForFunction(() => document.querySelectorAll(".cell")[10].querySelector(".prompt-count").textContent === "[1]");
  await page.keyboard.press("Control+s");
  await page.waitForFunction(() => document.querySelector("#saved").textContent === "saved");
  await page.screenshot({ path: path.join(artifacts, "notebook.png"), fullPage: true });

  step("a save from another tab is not overwritten unknowingly");
  const other = await context.newPage();
  await other.goto(`${base}notebook/analysis.ipynb`);
  await other.waitForSelector('body[data-loaded="true"]');
  await other.locator(".cell .cm-content").first().click();
  await other.keyboard.insertText("# from the other tab\n");
  await other.keyboard.press("Control+s");
  await other.waitForFunction(() => document.querySelector("#saved").textContent === "saved");
  await page.locator(".cell .cm-content").first().click();
  await page.keyboard.insertText("# from this tab\n");
  await page.waitForFunction(() => document.querySelector("#saved").textContent === "changed in another tab");
  if (!(await page.isVisible("#conflict-keep"))) throw new Error("no choice offered on a conflict");
  await page.click("#conflict-keep");
  await page.waitForFunction(() => document.querySelector("#saved").textContent === "saved");
  await other.close();

  step("on a second conflict, Reload shows the other tab's notebook");
  const third = await context.newPage();
  await third.goto(`${base}notebook/analysis.ipynb`);
  await third.waitForSelector('body[data-loaded="true"]');
  const kept = await third.locator(".cell .cm-content").first().textContent();
  if (!kept.includes("# from this tab") || kept.includes("# from the other tab")) throw new Error(`Keep mine did not keep this tab's copy: ${kept}`);
  await third.locator(".cell .cm-content").first().click();
  await third.keyboard.insertText("# third tab\n");
  await third.keyboard.press("Control+s");
  await third.waitForFunction(() => document.querySelector("#saved").textContent === "saved");
  await third.close();
  await page.locator(".cell .cm-content").first().click();
  await page.keyboard.insertText("# dropped\n");
  await page.waitForFunction(() => document.querySelector("#saved").textContent === "changed in another tab");
  const reloaded = page.waitForEvent("load");
  await page.click("#conflict-reload");
  await reloaded;
  await page.waitForSelector('body[data-loaded="true"]');
  const first = await page.locator(".cell .cm-content").first().textContent();
  if (!first.includes("# third tab") || first.includes("# dropped")) throw new Error(`after Reload: ${first}`);
  // The order of cells and the rendered Markdown came back from the file.
  if ((await page.locator(".cell").nth(9).locator(".markdown h1").textContent()) !== "Results") throw new Error("the Markdown cell was not saved in its place");

  step("a notebook made by Jupyter opens from the file tree and runs");
  await page.goto(base);
  await page.waitForSelector('body[data-ready="true"]', { timeout: 60_000 });
  await page.setInputFiles("#upload", fixture);
  await page.waitForSelector('#tree [data-path="made-by-jupyter.ipynb"]');
  await page.click('#tree [data-path="made-by-jupyter.ipynb"]');
  await page.waitForURL(/notebook\/made-by-jupyter.ipynb$/);
  await page.waitForSelector('body[data-loaded="true"]');
  await idle();
  const md = await page.locator(".cell .markdown h1").textContent();
  if (md !== "Made by Jupyter") throw new Error(`markdown: ${md}`);
  await page.click("#run-all");
  await page.waitForFunction(() => [...document.querySelectorAll(".outputs pre.stream")].some((e) => e.textContent.includes("twice: 90")));

  step("the saved notebooks come back in the workspace zip");
  const zip = await page.request.get(`${base}workspace.zip`);
  fs.writeFileSync(path.join(artifacts, "notebook-workspace.zip"), await zip.body());
  console.log("ok");
} catch (e) {
  console.log(`FAILED: ${e.message}`);
  console.log(logs.slice(-20).join("\n"));
  try { await page.screenshot({ path: path.join(artifacts, "failure-notebook.png"), fullPage: true }); } catch { /* gone */ }
  process.exitCode = 1;
} finally {
  await browser.close();
}
