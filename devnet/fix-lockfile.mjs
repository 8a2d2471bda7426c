// Adds lockfile entries for optional platform builds that the lockfile's own
// dependency edges name but that `npm install` could not record because the
// registry reachable here does not carry them. Without the entries `npm ci`
// refuses to run ("Missing: ... from lock file"). Each entry carries its os/cpu
// so npm skips it on a non-matching platform before fetching anything.
//
// Run after any `npm install` that rewrites package-lock.json:
//   node fix-lockfile.mjs
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const lockPath = join(dirname(fileURLToPath(import.meta.url)), "package-lock.json");
const lock = JSON.parse(readFileSync(lockPath, "utf8"));
const pkgs = lock.packages;

const PLATFORM = {
  "darwin-arm64": { os: "darwin", cpu: "arm64" },
  "darwin-x64": { os: "darwin", cpu: "x64" },
  "linux-arm": { os: "linux", cpu: "arm" },
  "linux-arm64": { os: "linux", cpu: "arm64" },
  "linux-x64": { os: "linux", cpu: "x64" },
  "win32-x64": { os: "win32", cpu: "x64" },
};
const PREFIX = "@msgpackr-extract/msgpackr-extract-";

let added = 0;
for (const [path, entry] of Object.entries(pkgs)) {
  if (!path.endsWith("node_modules/msgpackr-extract")) continue;
  const base = path.slice(0, -"msgpackr-extract".length);
  for (const [name, version] of Object.entries(entry.optionalDependencies ?? {})) {
    if (!name.startsWith(PREFIX)) continue;
    const key = base + name;
    if (pkgs[key]) continue;
    const plat = PLATFORM[name.slice(PREFIX.length)];
    if (!plat) throw new Error(`unknown platform package ${name}`);
    pkgs[key] = {
      version,
      cpu: [plat.cpu],
      license: "MIT",
      optional: true,
      os: [plat.os],
    };
    added++;
  }
}

// Keep keys sorted the way npm writes them, so later npm runs produce small diffs.
const sorted = {};
for (const key of Object.keys(pkgs).sort((a, b) => (a === "" ? -1 : b === "" ? 1 : a.localeCompare(b, "en")))) {
  sorted[key] = pkgs[key];
}
lock.packages = sorted;
writeFileSync(lockPath, JSON.stringify(lock, null, 2) + "\n");
console.log(`fix-lockfile: added ${added} entr${added === 1 ? "y" : "ies"}`);
