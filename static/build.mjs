// Bundles each page's front end into dist/ (one JS and one CSS per page,
// plus lazily loaded chunks). Files whose bytes did not change are not
// rewritten, so cargo does not re-embed them.
import * as esbuild from "esbuild";
import fs from "node:fs";
import path from "node:path";
import zlib from "node:zlib";

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
  metafile: true,
  legalComments: "none",
  logLevel: "warning",
});

// Each script and style sheet also gzipped at the highest level, once here
// rather than on every request (the server sends it to a browser that
// accepts gzip); and, per page, the chunks its entry imports at once, which
// the page asks for with <link rel="modulepreload"> beside the entry
// instead of after it.
const files = result.outputFiles.map((f) => [f.path, Buffer.from(f.contents)]);
for (const [p, contents] of [...files]) {
  if (/\.(js|css)$/.test(p)) files.push([`${p}.gz`, zlib.gzipSync(contents, { level: 9 })]);
}
const preload = {};
for (const [out, meta] of Object.entries(result.metafile.outputs)) {
  if (!meta.entryPoint) continue;
  const name = path.basename(out, ".js");
  preload[name] = meta.imports
    .filter((i) => i.kind === "import-statement")
    .map((i) => path.relative("dist", i.path));
}
files.push([path.resolve("dist/preload.json"), Buffer.from(JSON.stringify(preload, null, 1) + "\n")]);

const keep = new Set();
let written = 0;
for (const [file, contents] of files) {
  keep.add(path.resolve(file));
  const old = fs.existsSync(file) ? fs.readFileSync(file) : null;
  if (old && Buffer.compare(old, contents) === 0) continue;
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, contents);
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
