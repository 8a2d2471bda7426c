// Compiles the test contracts in contracts/ with the solc npm package (no download: its
// soljson.js ships in the package) and prints {"Name": {"abi": [...], "bytecode": "0x..."}}.
//
//   node compile.mjs
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import solc from "solc";

const dir = join(dirname(fileURLToPath(import.meta.url)), "contracts");
const sources = {};
for (const f of readdirSync(dir).filter((f) => f.endsWith(".sol")).sort()) {
  sources[f] = { content: readFileSync(join(dir, f), "utf8") };
}
const input = {
  language: "Solidity",
  sources,
  settings: {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: "cancun",
    outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } },
  },
};
const out = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (out.errors ?? []).filter((e) => e.severity === "error");
if (errors.length > 0) {
  for (const e of errors) console.error(e.formattedMessage);
  process.exit(1);
}
const result = {};
for (const file of Object.values(out.contracts)) {
  for (const [name, c] of Object.entries(file)) {
    result[name] = { abi: c.abi, bytecode: "0x" + c.evm.bytecode.object };
  }
}
console.log(JSON.stringify(result));
