// Bundles page.js (viem + permissionless.js from npm) for the browser and writes the page:
//   node build.mjs OUT_DIR   ->  OUT_DIR/index.html, OUT_DIR/bundle.js
import { build } from "esbuild";
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const out = process.argv[2];
if (!out) {
  process.stderr.write("usage: node build.mjs OUT_DIR\n");
  process.exit(2);
}
mkdirSync(out, { recursive: true });
await build({
  entryPoints: [join(dirname(fileURLToPath(import.meta.url)), "page.js")],
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2022",
  outfile: join(out, "bundle.js"),
  logLevel: "warning",
});
writeFileSync(
  join(out, "index.html"),
  '<!doctype html><html><head><meta charset="utf-8"><title>opgate dapp</title></head>' +
    '<body><script type="module" src="/bundle.js"></script></body></html>\n',
);
