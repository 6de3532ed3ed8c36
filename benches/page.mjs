// make bench, the page's share: what a first visit loads (compressed) and
// how long until the editor takes keys and the sandbox is ready.
// Usage: node page.mjs <base-url> <visits>; prints one JSON line.
import { createRequire } from "node:module";

const require = createRequire(new URL("../static/package.json", import.meta.url));
const { chromium } = require("playwright-core");
const [base, visits = "10"] = process.argv.slice(2);

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic"],
});
const times = [];
let jsBytes = 0;
for (let i = 0; i < Number(visits); i++) {
  const context = await browser.newContext(); // a new browser: a new session
  const page = await context.newPage();
  const scripts = [];
  page.on("requestfinished", (req) => {
    if (req.resourceType() === "script") scripts.push(req);
  });
  await page.goto(base);
  await page.waitForSelector('body[data-ready="true"]', { timeout: 60_000 });
  times.push(await page.evaluate(() => window.replboxReadyAt));
  if (i === 0) {
    for (const req of scripts) jsBytes += (await req.sizes()).responseBodySize;
  }
  await context.close();
}
await browser.close();
if (jsBytes === 0 || times.length !== Number(visits)) {
  console.error(`page.mjs: ${times.length} visits measured, ${jsBytes} bytes of script seen`);
  process.exit(1);
}
times.sort((a, b) => a - b);
console.log(JSON.stringify({
  page_js_kb_gzip: Math.round(jsBytes / 102.4) / 10,
  page_ready_ms: Math.round(times[Math.floor(times.length / 2)]),
  page_ready_max_ms: Math.round(times[times.length - 1]),
}));
