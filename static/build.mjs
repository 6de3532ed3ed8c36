// Bundles each page's front end into dist/ (one JS and one CSS per page,
// plus lazily loaded chunks). Files whose bytes did not change are not
// rewritten, so cargo does not re-embed them.
import * as esbuild from "esbuild";
import fs from "node:fs";
import path from "node:path";

const pages = ["ide", "notebook"];
// boot.js: the IDE's first script, with no imports (it opens the socket).
const entries = [...pages, "boot"];
const result = await esbuild.build({
  entryPoints: Object.fromEntries(entries.map((p) => [p, `src/${p}.js`])),
  bundle: true,
  splitting: true,
  chunkNames: "chunks/[name]-[hash]",
  minify: true,
  format: "esm",
  target: ["es2022"],
  outdir: "dist",
  write: false,
  legalComments: "none",
  logLevel: "warning",
});

const keep = new Set();
let written = 0;
for (const file of result.outputFiles) {
  keep.add(path.resolve(file.path));
  const old = fs.existsSync(file.path) ? fs.readFileSync(file.path) : null;
  if (old && Buffer.compare(old, Buffer.from(file.contents)) === 0) continue;
  fs.mkdirSync(path.dirname(file.path), { recursive: true });
  fs.writeFileSync(file.path, file.contents);
  written++;
}
for (const dir of ["dist", "dist/chunks"]) {
  if (!fs.existsSync(dir)) continue;
  for (const name of fs.readdirSync(dir)) {
    const p = path.resolve(dir, name);
    if (fs.statSync(p).isFile() && !keep.has(p)) fs.rmSync(p);
  }
}
console.log(`==> front end: ${pages.join(", ")} in static/dist (${written} file(s) changed)`);
