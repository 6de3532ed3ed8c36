// A class in Debian's Chromium: a teacher makes a class, a student joins,
// runs the starter, checks, fixes, checks again; the teacher's dashboard.
// Usage: node classroom.mjs <base-url> <teacher-name> <teacher-password> <artifacts-dir>
import { createRequire } from "node:module";
import fs from "node:fs";
import path from "node:path";

const require = createRequire(new URL("../../static/package.json", import.meta.url));
const { chromium } = require("playwright-core");
const [base, teacherName, teacherPassword, artifacts = "test-artifacts"] = process.argv.slice(2);
fs.mkdirSync(artifacts, { recursive: true });

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic"],
});
const teacher = await (await browser.newContext({ viewport: { width: 1280, height: 800 } })).newPage();
const student = await (await browser.newContext({ viewport: { width: 1400, height: 850 } })).newPage();
const logs = [];
for (const p of [teacher, student]) {
  p.on("console", (m) => logs.push(`[console.${m.type()}] ${m.text()}`));
  p.on("pageerror", (e) => logs.push(`[pageerror] ${e.message}`));
}
const step = (s) => console.log(`  - ${s}`);
const FIXED = 'def greet(name):\n    return "Hello, " + name + "!"\n\n\nif __name__ == "__main__":\n    print(greet(input("What is your name? ")))\n';

try {
  step("the teacher signs in and makes a class");
  await teacher.goto(`${base}teacher/sign-in`);
  await teacher.fill("#name", teacherName);
  await teacher.fill("#password", "not-the-password");
  await teacher.click("button[type=submit]");
  await teacher.waitForSelector(".flash");
  await teacher.fill("#name", teacherName);
  await teacher.fill("#password", teacherPassword);
  await teacher.click("button[type=submit]");
  await teacher.waitForURL(/\/teacher$/);
  await teacher.fill("#class-name", "7B");
  await teacher.click("form.stack button[type=submit]");
  const code = (await teacher.locator(".code").first().textContent()).replace("code", "").trim();
  if (!/^[A-Z0-9]{12}$/.test(code)) throw new Error(`class code: ${code}`);

  step("the teacher gives the class two of the four exercises");
  await teacher.uncheck('label:has-text("FizzBuzz") input');
  await teacher.uncheck('label:has-text("Add them up") input');
  await teacher.click('button:has-text("Save the choice")');
  await teacher.waitForURL(/\/teacher$/);
  if (await teacher.isChecked('label:has-text("FizzBuzz") input')) throw new Error("the choice was not kept");
  await teacher.screenshot({ path: path.join(artifacts, "teacher-classes.png") });

  step("a student joins with the code and opens an exercise");
  await student.goto(`${base}exercises`);
  await student.fill("#code", code);
  await student.fill("#name", "Ada");
  await student.click('button:has-text("Join")');
  await student.waitForSelector("text=Say hello");
  const recovery = await student.locator("#recovery code").textContent();
  if (!/^[A-Z0-9]{4}(-[A-Z0-9]{4}){3}$/.test(recovery)) throw new Error(`recovery code: ${recovery}`);
  const listed = await student.locator("table.list tbody").innerText();
  if (!listed.includes("Count the lines") || listed.includes("FizzBuzz") || listed.includes("Add them up")) {
    throw new Error(`the class sees: ${listed}`);
  }
  await student.click("text=Say hello");
  await student.waitForSelector('body[data-ready="true"]', { timeout: 60_000 });
  if (!(await student.locator(".prompt h1").textContent()).includes("Say hello")) throw new Error("no prompt");
  await student.waitForSelector(".prompt pre code span[class^='tok-']");
  const tab = await student.locator('#tabs [aria-selected="true"]').getAttribute("title");
  if (tab !== "main.py") throw new Error(`opened ${tab}`);

  step("runs the starter, checks, sees which test failed and why");
  await student.keyboard.press("Control+Enter");
  await student.waitForFunction(() => document.querySelector("#output").textContent.includes("What is your name?"));
  await student.fill("#input", "Ada");
  await student.press("#input", "Enter");
  await student.waitForFunction(() => document.querySelector("#output").textContent.includes("exit code 0"));
  await student.click("#check");
  await student.waitForSelector(".results-pane .score", { timeout: 60_000 });
  const first = await student.locator(".results-pane .score").textContent();
  if (first !== "Score: 0 / 10") throw new Error(first);
  const expected = await student.locator('.results-pane pre[data-label="expected"]').first().textContent();
  if (expected !== "What is your name? Hello, Ada!") throw new Error(`expected: ${expected}`);

  step("fixes it and gets full points");
  await student.click(".cm-content");
  await student.keyboard.press("Control+a");
  await student.keyboard.press("Delete");
  await student.keyboard.insertText(FIXED);
  await student.click("#check");
  await student.waitForFunction(() => document.querySelector(".results-pane .score")?.textContent === "Score: 10 / 10", null, { timeout: 60_000 });
  await student.screenshot({ path: path.join(artifacts, "exercise.png") });

  step("the teacher's dashboard shows it; the student cannot see it");
  await teacher.goto(`${base}teacher`);
  await teacher.click('li:has-text("Say hello") >> text=results');
  const row = await teacher.locator("#standings tbody tr").first().innerText();
  if (!/Ada\s+10 \/ 10\s+2/.test(row)) throw new Error(`row: ${row}`);
  await teacher.click("text=latest checked files");
  const file = await teacher.locator("pre.file").first().textContent();
  if (!file.includes('+ "!"')) throw new Error(`files: ${file}`);
  await teacher.screenshot({ path: path.join(artifacts, "teacher.png") });
  await student.goto(`${base}teacher`);
  if (!student.url().endsWith("/teacher/sign-in")) throw new Error(`student reached ${student.url()}`);
  console.log("ok");
} catch (e) {
  console.log(`FAILED: ${e.message}`);
  console.log(logs.slice(-20).join("\n"));
  try {
    await student.screenshot({ path: path.join(artifacts, "failure-classroom-student.png") });
    await teacher.screenshot({ path: path.join(artifacts, "failure-classroom-teacher.png") });
  } catch { /* gone */ }
  process.exitCode = 1;
} finally {
  await browser.close();
}
