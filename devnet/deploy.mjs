// Deploys EntryPoint v0.6, v0.7, v0.8 and their SimpleAccountFactory contracts
// on a local anvil through the deterministic CREATE2 deployer, so they land at
// the same addresses as on public networks.
//
//   node deploy.mjs --rpc http://127.0.0.1:18545
//
// Prints KEY=VALUE lines (ENTRYPOINT_06, FACTORY_06, ...) on stdout. Safe to run
// again: contracts that already have code are left as they are.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import {
  concat,
  createPublicClient,
  encodeDeployData,
  getAddress,
  getContractAddress,
  http,
  zeroHash,
} from "viem";

const here = dirname(fileURLToPath(import.meta.url));

// The CREATE2 deployer anvil ships in its genesis state.
const DEPLOYER = "0x4e59b44847b379578588920ca78fbf26c0b4956c";
// anvil's first default account; anvil holds its key, so eth_sendTransaction works.
const FUNDER = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";

// Salts of the canonical deployments. With the bytecode in the npm artifacts they
// give exactly the canonical addresses below.
const SALT_EP_06 = zeroHash;
const SALT_EP_07 = "0x90d8084deab30c2a37c45e8d47f49f2f7965183cb6990a98943ef94940681de3";
const SALT_EP_08 = "0x0a59dbff790c23c976a548690c27297883cc66b4c67024f9117b0238995e35e9";
const SALT_FACTORY = zeroHash;

const CANONICAL = {
  ENTRYPOINT_06: "0x5FF137D4b0FDCD49DcA30c7CF57E578a026d2789",
  ENTRYPOINT_07: "0x0000000071727De22E5E9d8BAf0edAc6f37da032",
  ENTRYPOINT_08: "0x4337084D9E255Ff0702461CF8895CE9E3b5Ff108",
  FACTORY_06: "0x9406Cc6185a346906296840746125a0E44976454",
  FACTORY_07: "0x91E60e0613810449d098b0b5Ec8b51A0FE8c8985",
  // No fixed expectation for 0.8: the address is whatever the artifact yields.
  FACTORY_08: null,
};

function artifact(version, name) {
  const path = join(here, "node_modules", `aa-contracts-${version}`, "artifacts", `${name}.json`);
  return JSON.parse(readFileSync(path, "utf8"));
}

function fail(message) {
  process.stderr.write(`deploy: ${message}\n`);
  process.exit(1);
}

const { values: opts } = parseArgs({
  options: { rpc: { type: "string", default: process.env.ANVIL_URL ?? "http://127.0.0.1:18545" } },
});

const client = createPublicClient({ transport: http(opts.rpc, { timeout: 30_000, retryCount: 0 }) });

async function hasCode(address) {
  const code = await client.getCode({ address });
  return code !== undefined && code !== "0x";
}

async function sendAndWait(tx) {
  const hash = await client.request({ method: "eth_sendTransaction", params: [tx] });
  const receipt = await client.waitForTransactionReceipt({ hash, timeout: 30_000 });
  if (receipt.status !== "success") fail(`transaction ${hash} reverted`);
  return receipt;
}

// Deploys `initCode` through the CREATE2 deployer and returns where it landed.
async function create2(salt, initCode) {
  const address = getContractAddress({ opcode: "CREATE2", from: DEPLOYER, salt, bytecode: initCode });
  if (await hasCode(address)) return { address, sent: false };
  // 30M gas: enough for the largest EntryPoint, and anvil's default block gas limit.
  await sendAndWait({ from: FUNDER, to: DEPLOYER, data: concat([salt, initCode]), gas: "0x1c9c380" });
  if (!(await hasCode(address))) fail(`CREATE2 deployment to ${address} left no code`);
  return { address, sent: true };
}

// Puts a contract at its canonical address. If the artifact and salt yield that
// address, it is a real CREATE2 deployment; otherwise the contract is deployed
// where the artifact lands and its runtime code is copied with anvil_setCode.
async function place(key, salt, initCode) {
  const canonical = CANONICAL[key];
  if (canonical && (await hasCode(canonical))) return { address: canonical, how: "present" };
  const { address: landed, sent } = await create2(salt, initCode);
  if (!canonical || getAddress(landed) === getAddress(canonical)) {
    return { address: getAddress(landed), how: sent ? "create2" : "present" };
  }
  const code = await client.getCode({ address: landed });
  await client.request({ method: "anvil_setCode", params: [canonical, code] });
  process.stderr.write(`deploy: ${key}: artifact lands at ${landed}, copied its code to ${canonical} with anvil_setCode\n`);
  return { address: canonical, how: "setCode" };
}

async function main() {
  const chainId = await client.getChainId();
  if (!(await hasCode(DEPLOYER))) fail(`no CREATE2 deployer at ${DEPLOYER} on chain ${chainId}`);

  const out = {};
  const plan = [
    ["06", SALT_EP_06],
    ["07", SALT_EP_07],
    ["08", SALT_EP_08],
  ];
  for (const [version, epSalt] of plan) {
    const ep = artifact(version, "EntryPoint");
    const epPlaced = await place(`ENTRYPOINT_${version}`, epSalt, ep.bytecode);
    out[`ENTRYPOINT_${version}`] = epPlaced.address;

    const factory = artifact(version, "SimpleAccountFactory");
    const factoryInit = encodeDeployData({
      abi: factory.abi,
      bytecode: factory.bytecode,
      args: [epPlaced.address],
    });
    const factoryPlaced = await place(`FACTORY_${version}`, SALT_FACTORY, factoryInit);
    out[`FACTORY_${version}`] = factoryPlaced.address;
    process.stderr.write(`deploy: ENTRYPOINT_${version}=${epPlaced.address} (${epPlaced.how})\n`);
    process.stderr.write(`deploy: FACTORY_${version}=${factoryPlaced.address} (${factoryPlaced.how})\n`);
  }
  for (const [key, value] of Object.entries(out)) process.stdout.write(`${key}=${value}\n`);
}

main().catch((err) => fail(err?.shortMessage ?? err?.message ?? String(err)));
