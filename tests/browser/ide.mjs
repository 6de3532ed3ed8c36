// The IDE page in Debian's Chromium, driven by playwright-core.
// Usage: node ide.mjs <base-url> <scenario: main|expiry> <artifacts-dir>
import { createRequire } from "node:module";
import fs from "node:fs";
import path from "node:path";

const require = createRequire(new URL("../../static/package.json", import.meta.url));
const { chromium } = require("playwright-core");

const [base, scenario = "main", artifacts = "test-artifacts"] = process.argv.slice(2);
fs.mkdirSync(artifacts, { recursive: true });

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic"],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
const page = await context.newPage();
const logs = [];
page.on("console", (m) => logs.push(`[console.${m.type()}] ${m.text()}`));
page.on("pageerror", (e) => logs.push(`[pageerror] ${e.message}`));

function step(name) {
  console.log(`  - ${name}`);
}

async function ready() {
  await page.waitForSelector('body[data-ready="true"]', { timeout: 60_000 });
}

async function output() {
  return page.locator("#output").textContent();
}

async function waitOutput(text, timeout = 30_000) {
  await page.waitForFunction((t) => document.querySelector("#output").textContent.includes(t), text, { timeout });
}

async function setEditor(text) {
  await page.click(".cm-content");
  await page.keyboard.press("Control+a");
  await page.keyboard.press("Delete");
  await page.keyboard.insertText(text);
}

async function openFromTree(name) {
  await page.click(`#tree [data-path="${name}"]`);
  await page.waitForFunction((n) => document.querySelector('#tabs [aria-selected="true"]')?.title === n, name);
}

async function runAndWait(expect) {
  await page.click("#run");
  await waitOutput(expect);
  await waitOutput("—");
}

async function terminalText() {
  return page.evaluate(() => document.querySelector("#terminal .xterm-rows")?.innerText ?? "");
}

async function waitTerminal(text, timeout = 20_000) {
  await page.waitForFunction(
    (t) => (document.querySelector("#terminal .xterm-rows")?.innerText ?? "").includes(t), text, { timeout });
}

try {
  await page.goto(base);
  if (scenario === "main") {
    step("the page opens with a welcome file, ready to run");
    await ready();
    const tabs = await page.locator("#tabs [role=tab]").allTextContents();
    if (!tabs.some((t) => t.startsWith("main.py"))) throw new Error(`welcome tab missing: ${tabs}`);

    step("type a Python program that asks for a name, run it, answer it");
    await setEditor('name = input("Your name? ")\nprint("Hi, " + name + "!")\n');
    await page.keyboard.press("Control+Enter");
    await waitOutput("Your name? ");
    await page.fill("#input", "Ada");
    await page.press("#input", "Enter");
    await waitOutput("Hi, Ada!");
    await waitOutput("exit code 0");

    step("create hello.go and run it");
    await page.click("#new-file");
    await page.fill("#dialog-input", "hello.go");
    await page.press("#dialog-input", "Enter");
    await page.waitForFunction(() => document.querySelector('#tabs [aria-selected="true"]')?.title === "hello.go");
    await setEditor('package main\n\nimport "fmt"\n\nfunc main() {\n\tfmt.Println("Hello from hello.go")\n}\n');
    await runAndWait("Hello from hello.go");
    if (!(await output()).includes("exit code 0")) throw new Error(`go run: ${await output()}`);

    step("run JavaScript and Bash");
    await openFromTree("main.js");
    await setEditor('console.log([1, 2, 3].map((x) => x * 7).join(","));\n');
    await runAndWait("7,14,21");
    await openFromTree("main.sh");
    await setEditor('echo "bash says $((6 * 7))"\necho "to stderr" >&2\n');
    await runAndWait("bash says 42");
    const stderrSpans = await page.locator("#output .stderr").allTextContents();
    if (!stderrSpans.join("").includes("to stderr")) throw new Error("stderr is not told apart");

    step("the terminal lists the files of the tree");
    await page.click("#tab-terminal");
    await page.waitForSelector("#terminal .xterm-rows");
    // The shell is attached once its prompt shows, and keys go to it once
    // the terminal has the focus.
    await waitTerminal("$");
    await page.click("#terminal");
    await page.waitForFunction(() => document.activeElement?.closest("#terminal") != null);
    await page.keyboard.type("ls\n");
    await waitTerminal("hello.go");
    await page.keyboard.type("echo marker-$((6*7))\n");
    await waitTerminal("marker-42");

    step("a reload keeps tabs, files and the shell");
    await page.reload();
    await ready();
    const after = await page.locator("#tabs [role=tab]").evaluateAll((els) => els.map((e) => e.title));
    for (const f of ["main.py", "hello.go", "main.js", "main.sh"]) {
      if (!after.includes(f)) throw new Error(`tab ${f} lost on reload: ${after}`);
    }
    await page.waitForSelector('#tree [data-path="hello.go"]');
    await waitTerminal("marker-42");
    await page.click("#terminal");
    await page.keyboard.type("echo still-$((1+1))\n");
    await waitTerminal("still-2");

    step("Stop ends a busy loop within a second");
    await page.click("#tab-output");
    await openFromTree("main.py");
    await setEditor('print("looping", flush=True)\nwhile True:\n    pass\n');
    await page.click("#run");
    await page.waitForFunction(() => !document.querySelector("#stop").disabled);
    await waitOutput("looping"); // the loop runs now
    const t0 = Date.now();
    await page.click("#stop");
    await page.waitForFunction(() => document.querySelector("#stop").disabled, null, { timeout: 5000 });
    const took = Date.now() - t0;
    console.log(`    stopped in ${took} ms`);
    if (took > 1000) throw new Error(`Stop took ${took} ms`);

    step("upload, rename and delete a file from the tree");
    const upload = path.join(artifacts, "notes.txt");
    fs.writeFileSync(upload, "uploaded notes\n");
    await page.setInputFiles("#upload", upload);
    await page.waitForSelector('#tree [data-path="notes.txt"]');
    await page.click('#tree [data-path="notes.txt"]');
    await page.waitForFunction(() => document.querySelector(".cm-content").textContent.includes("uploaded notes"));
    await page.click("#rename");
    await page.fill("#dialog-input", "renamed.txt");
    await page.press("#dialog-input", "Enter");
    await page.waitForSelector('#tree [data-path="renamed.txt"]');
    await page.click("#delete");
    await page.click("#dialog-ok");
    await page.waitForSelector('#tree [data-path="renamed.txt"]', { state: "detached" });
    const tabsNow = await page.locator("#tabs [role=tab]").evaluateAll((els) => els.map((e) => e.title));
    if (tabsNow.includes("renamed.txt")) throw new Error("a deleted file's tab stayed open");

    step("a save from another tab is not overwritten unknowingly");
    const tabSaved = (p) => p.waitForFunction(() => !document.querySelector('#tabs [aria-selected="true"]').textContent.includes("•"));
    await openFromTree("main.py");
    await setEditor("print('first')\n");
    await tabSaved(page);
    const other = await context.newPage();
    await other.goto(base);
    await other.waitForSelector('body[data-ready="true"]', { timeout: 60_000 });
    await other.click('#tree [data-path="main.py"]');
    await other.waitForFunction(() => document.querySelector(".cm-content").textContent.includes("first"));
    await other.click(".cm-content");
    await other.keyboard.press("Control+a");
    await other.keyboard.insertText("print('from the other tab')\n");
    await tabSaved(other);
    await other.close();
    await page.click(".cm-content");
    await page.keyboard.press("Control+End");
    await page.keyboard.insertText("# mine\n");
    await page.waitForSelector("#conflict", { state: "visible" });
    const said = await page.locator("#conflict-text").textContent();
    if (!said.includes("changed in another tab")) throw new Error(`conflict bar says: ${said}`);
    await page.screenshot({ path: path.join(artifacts, "ide-conflict.png") });
    await page.click("#run");
    await waitOutput("pick Reload or Keep mine");
    await page.click("#conflict-reload");
    await page.waitForSelector("#conflict", { state: "hidden" });
    await page.waitForFunction(() => document.querySelector(".cm-content").textContent.includes("from the other tab"));
    await page.click(".cm-content");
    await page.keyboard.press("Control+End");
    await page.keyboard.insertText("# after reload\n");
    await tabSaved(page);
    await runAndWait("from the other tab");

    step("on the next conflict, Keep mine saves this tab's copy over the other");
    const third = await context.newPage();
    await third.goto(base);
    await third.waitForSelector('body[data-ready="true"]', { timeout: 60_000 });
    await third.click('#tree [data-path="main.py"]');
    await third.waitForFunction(() => document.querySelector(".cm-content").textContent.includes("# after reload"));
    await third.click(".cm-content");
    await third.keyboard.press("Control+a");
    await third.keyboard.insertText("print('theirs')\n");
    await tabSaved(third);
    await third.close();
    await page.click(".cm-content");
    await page.keyboard.press("Control+a");
    await page.keyboard.insertText("print('mine ' + 'kept')\n");
    await page.waitForSelector("#conflict", { state: "visible" });
    await page.click("#conflict-keep");
    await page.waitForSelector("#conflict", { state: "hidden" });
    await tabSaved(page);
    await runAndWait("mine kept");
    if ((await output()).includes("theirs")) throw new Error(`the other tab's copy ran: ${await output()}`);

    step("a file deleted elsewhere: Reload closes its tab and says so");
    await page.click("#tab-terminal");
    await page.click("#terminal");
    await page.keyboard.type("echo draft > scratch.txt && echo made-$((2+3))\n");
    await waitTerminal("made-5");
    await page.click("#refresh");
    await page.click("#tab-output");
    await openFromTree("scratch.txt");
    await page.click("#tab-terminal");
    await page.click("#terminal");
    await page.keyboard.type("rm scratch.txt && echo gone-$((3+4))\n");
    await waitTerminal("gone-7");
    await page.click(".cm-content");
    await page.keyboard.press("Control+End");
    await page.keyboard.insertText("more\n");
    await page.waitForSelector("#conflict", { state: "visible" });
    await page.click("#conflict-reload");
    await waitOutput("scratch.txt was deleted");
    const open = await page.locator("#tabs [role=tab]").evaluateAll((els) => els.map((e) => e.title));
    if (open.includes("scratch.txt")) throw new Error("the deleted file's tab stayed open");

    step("phone width is usable");
    await page.setViewportSize({ width: 390, height: 800 });
    // Nothing scrolls sideways, every visible control lies inside the
    // screen, and the editor and the output keep room to work in.
    const phone = await page.evaluate(() => {
      const off = [];
      for (const el of document.querySelectorAll("button, input, select, a.button, label.button, #editor, #output")) {
        const r = el.getBoundingClientRect();
        if (r.width === 0 || r.height === 0) continue; // hidden
        if (r.left < 0 || r.right > window.innerWidth + 0.5) off.push(`${el.id || el.textContent.trim()}: ${r.left}-${r.right}`);
      }
      const size = (sel) => { const r = document.querySelector(sel).getBoundingClientRect(); return [r.width, r.height]; };
      return { scroll: document.documentElement.scrollWidth, width: window.innerWidth, off, editor: size("#editor"), output: size("#output") };
    });
    if (phone.scroll > phone.width) throw new Error(`the page scrolls sideways at phone width: ${phone.scroll} > ${phone.width}`);
    if (phone.off.length) throw new Error(`off screen at phone width: ${phone.off.join("; ")}`);
    if (phone.editor[0] < 300 || phone.editor[1] < 150) throw new Error(`the editor is cramped at phone width: ${phone.editor}`);
    if (phone.output[0] < 300) throw new Error(`the output is cramped at phone width: ${phone.output}`);
    const runBox = await page.locator("#run").boundingBox();
    const hit = await page.evaluate(([x, y]) => document.elementFromPoint(x, y)?.closest("#run") !== null, [runBox.x + runBox.width / 2, runBox.y + runBox.height / 2]);
    if (!hit) throw new Error("Run is covered at phone width");
    await page.screenshot({ path: path.join(artifacts, "ide-phone.png") });
    await page.setViewportSize({ width: 1280, height: 800 });
    await page.screenshot({ path: path.join(artifacts, "ide.png") });
  } else if (scenario === "expiry") {
    step("the clock warns before the sandbox expires");
    await ready();
    await page.waitForSelector('#clock[data-level="warn"]', { timeout: 10_000 });
    const warning = await page.locator("#clock").textContent();
    if (!/Stops in 0:0\d/.test(warning)) throw new Error(`clock: ${warning}`);
    step("an idle sandbox expires, the page says the files are kept");
    await page.waitForSelector("#banner:not([hidden])", { timeout: 30_000 });
    const text = await page.locator("#banner-text").textContent();
    if (!/files are kept/i.test(text)) throw new Error(`banner: ${text}`);
    await page.screenshot({ path: path.join(artifacts, "ide-expired.png") });
    step("one click brings back a working workspace with the same files");
    await page.click("#restore");
    await ready();
    await page.waitForSelector('#tree [data-path="main.sh"]');
    await openFromTree("main.sh");
    await runAndWait("replbox runs Go");
  }
  console.log("ok");
} catch (e) {
  console.log(`FAILED: ${e.message}`);
  console.log(logs.slice(-30).join("\n"));
  try {
    await page.screenshot({ path: path.join(artifacts, `failure-${scenario}.png`) });
    console.log(`output pane: ${await output()}`);
  } catch { /* page gone */ }
  process.exitCode = 1;
} finally {
  await browser.close();
}
