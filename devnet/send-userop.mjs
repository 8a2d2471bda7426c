// Sends one UserOperation the way a real wallet does: permissionless.js
// SimpleAccount, viem, a bundler transport, fees from
// pimlico_getUserOperationGasPrice, and the receipt fetched from the bundler.
//
//   node send-userop.mjs --bundler URL --rpc URL [--entry-point 0.7|0.6|0.8]
//                        [--owner-key 0x..] [--factory 0x..] [--to 0x..]
//                        [--value WEI] [--timeout SECONDS]
//
// --bundler is what the SDK's bundlerTransport talks to (alto, or opgate in front
// of it); --rpc is anvil, used to read chain state and to fund the new account.
// Defaults come from BUNDLER_URL, ANVIL_URL, ENTRY_POINT_VERSION, OWNER_KEY.
//
// On success prints one JSON line on stdout:
//   {"userOpHash":..,"success":true,"transactionHash":..,"blockNumber":..,"sender":..}
// On failure prints one line on stderr and exits non-zero (an operation that was
// included but whose call reverted prints its JSON line, then exits 1).
import { parseArgs } from "node:util";
import { createPublicClient, defineChain, getAddress, http, isAddress, isHex, parseEther } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { foundry } from "viem/chains";
import { createSmartAccountClient } from "permissionless";
import { toSimpleSmartAccount } from "permissionless/accounts";
import { createPimlicoClient } from "permissionless/clients/pimlico";

const ENTRY_POINTS = {
  "0.6": "0x5FF137D4b0FDCD49DcA30c7CF57E578a026d2789",
  "0.7": "0x0000000071727De22E5E9d8BAf0edAc6f37da032",
  "0.8": "0x4337084D9E255Ff0702461CF8895CE9E3b5Ff108",
};
// anvil's first default account; anvil holds its key, so eth_sendTransaction works
// and anvil picks the nonce (safe when several clients fund at once).
const FUNDER = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
const FUNDING = parseEther("1");
const DEFAULT_TO = "0x000000000000000000000000000000000000dEaD";

function oneLine(text) {
  return String(text).replace(/\s+/g, " ").trim();
}

function describe(err) {
  if (!err) return "unknown error";
  const summary = err.shortMessage ?? err.message ?? String(err);
  const details = err.details && !summary.includes(err.details) ? ` (${err.details})` : "";
  return oneLine(summary + details);
}

function die(message, code = 1) {
  process.stderr.write(`send-userop: ${oneLine(message)}\n`);
  process.exit(code);
}

const { values: opts } = parseArgs({
  options: {
    bundler: { type: "string", default: process.env.BUNDLER_URL },
    rpc: { type: "string", default: process.env.ANVIL_URL },
    "entry-point": { type: "string", default: process.env.ENTRY_POINT_VERSION ?? "0.7" },
    "entry-point-address": { type: "string" },
    factory: { type: "string" },
    "owner-key": { type: "string", default: process.env.OWNER_KEY },
    to: { type: "string", default: DEFAULT_TO },
    value: { type: "string", default: "12345" },
    timeout: { type: "string", default: "60" },
  },
  strict: true,
});

if (!opts.bundler) die("--bundler URL (or BUNDLER_URL) is required", 2);
if (!opts.rpc) die("--rpc URL (or ANVIL_URL) is required", 2);
const version = opts["entry-point"];
if (!(version in ENTRY_POINTS)) die(`--entry-point must be one of ${Object.keys(ENTRY_POINTS).join(", ")}`, 2);
const entryPointAddress = opts["entry-point-address"] ?? ENTRY_POINTS[version];
if (!isAddress(entryPointAddress)) die("--entry-point-address is not an address", 2);
if (opts.factory !== undefined && !isAddress(opts.factory)) die("--factory is not an address", 2);
if (!isAddress(opts.to)) die("--to is not an address", 2);
if (opts["owner-key"] !== undefined && !(isHex(opts["owner-key"]) && opts["owner-key"].length === 66)) {
  die("--owner-key must be a 32-byte hex private key", 2);
}
const timeoutSeconds = Number(opts.timeout);
if (!Number.isFinite(timeoutSeconds) || timeoutSeconds <= 0) die("--timeout must be a positive number of seconds", 2);
let value;
try {
  value = BigInt(opts.value);
} catch {
  die("--value must be an integer number of wei", 2);
}

// Whatever happens, the process ends within the timeout.
const watchdog = setTimeout(() => die(`timed out after ${timeoutSeconds}s`, 3), timeoutSeconds * 1000);

async function main() {
  const rpc = createPublicClient({ transport: http(opts.rpc, { timeout: 15_000 }) });
  const chainId = await rpc.getChainId();
  const chain = defineChain({ ...foundry, id: chainId, rpcUrls: { default: { http: [opts.rpc] } } });
  const publicClient = createPublicClient({ chain, transport: http(opts.rpc, { timeout: 15_000 }) });

  const owner = privateKeyToAccount(opts["owner-key"] ?? generatePrivateKey());
  const entryPoint = { address: getAddress(entryPointAddress), version };
  const account = await toSimpleSmartAccount({
    client: publicClient,
    owner,
    entryPoint,
    ...(opts.factory ? { factoryAddress: getAddress(opts.factory) } : {}),
  });

  // Fund the counterfactual account so it pays for its own deployment and call.
  const fundingHash = await publicClient.request({
    method: "eth_sendTransaction",
    params: [{ from: FUNDER, to: account.address, value: `0x${FUNDING.toString(16)}` }],
  });
  const funding = await publicClient.waitForTransactionReceipt({ hash: fundingHash, timeout: 20_000 });
  if (funding.status !== "success") throw new Error(`funding transaction ${fundingHash} failed`);

  // The bundler is never retried: a rejection (by alto or by a proxy in front of
  // it) must surface as it is.
  const bundlerTransport = http(opts.bundler, { timeout: 30_000, retryCount: 0 });
  const pimlico = createPimlicoClient({ transport: bundlerTransport, entryPoint });
  const client = createSmartAccountClient({
    account,
    chain,
    bundlerTransport,
    userOperation: {
      estimateFeesPerGas: async () => (await pimlico.getUserOperationGasPrice()).fast,
    },
  });

  const userOpHash = await client.sendUserOperation({
    calls: [{ to: getAddress(opts.to), value, data: "0x" }],
  });
  const receipt = await client.waitForUserOperationReceipt({
    hash: userOpHash,
    pollingInterval: 250,
    timeout: Math.max(1_000, timeoutSeconds * 1000 - 1_000),
  });

  const result = {
    userOpHash,
    success: receipt.success,
    transactionHash: receipt.receipt.transactionHash,
    blockNumber: Number(receipt.receipt.blockNumber),
    sender: getAddress(receipt.sender),
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
  clearTimeout(watchdog);
  if (!receipt.success) die(`UserOperation ${userOpHash} was included but its execution reverted${receipt.reason ? `: ${receipt.reason}` : ""}`);
  process.exit(0);
}

main().catch((err) => die(describe(err)));
