// Sends one UserOperation the way a real wallet does: permissionless.js
// SimpleAccount, viem, a bundler transport, fees from
// pimlico_getUserOperationGasPrice, and the receipt fetched from the bundler.
//
//   node send-userop.mjs --bundler URL --rpc URL [--entry-point 0.7|0.6|0.8]
//                        [--owner-key 0x..] [--salt N] [--factory 0x..]
//                        [--to 0x..] [--value WEI] [--data 0x..]
//                        [--max-fee-per-gas WEI] [--timeout SECONDS]
//                        [--expect-error] [--expect-reason NAME] [--print-address]
//
// --bundler is what the SDK's bundlerTransport talks to (alto, or opgate in front
// of it); --rpc is anvil, used to read chain state and to fund the account.
// Defaults come from BUNDLER_URL, ANVIL_URL, ENTRY_POINT_VERSION, OWNER_KEY.
// The same --owner-key and --salt (the factory's account index, default 0) give
// the same account, so several runs can send from one sender.
// --max-fee-per-gas replaces the bundler's suggested fee (to send an op whose
// maximum cost is high); --print-address prints {"sender":..} and sends nothing.
//
// On success prints one JSON line on stdout:
//   {"userOpHash":..,"success":true,"transactionHash":..,"blockNumber":..,"sender":..,...}
// On failure prints one line on stderr and exits non-zero (an operation that was
// included but whose call reverted prints its JSON line, then exits 1).
//
// --expect-error turns it around: the bundler endpoint must refuse
// eth_sendUserOperation. The JSON-RPC answer is printed as it came, on one line:
//   {"refused":true,"sender":..,"elapsedMs":..,"answer":{"jsonrpc":"2.0","id":..,"error":{..}}}
// and the exit status is 0; an op that is accepted exits 1. --expect-reason NAME
// also requires error.data.reason to be NAME (opgate's policy refusals carry it).
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
    data: { type: "string", default: "0x" },
    salt: { type: "string", default: "0" },
    "max-fee-per-gas": { type: "string" },
    timeout: { type: "string", default: "60" },
    "expect-error": { type: "boolean", default: false },
    "expect-reason": { type: "string" },
    "print-address": { type: "boolean", default: false },
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
function bigint(name, text) {
  try {
    const v = BigInt(text);
    if (v < 0n) throw new Error("negative");
    return v;
  } catch {
    return die(`--${name} must be a non-negative integer`, 2);
  }
}
const value = bigint("value", opts.value);
const salt = bigint("salt", opts.salt);
const maxFeePerGas = opts["max-fee-per-gas"] === undefined ? undefined : bigint("max-fee-per-gas", opts["max-fee-per-gas"]);
if (!isHex(opts.data) || opts.data.length % 2 !== 0) die("--data must be 0x-prefixed hex of whole bytes", 2);
const expectReason = opts["expect-reason"];
const expectError = opts["expect-error"] || expectReason !== undefined;

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
    index: salt,
    ...(opts.factory ? { factoryAddress: getAddress(opts.factory) } : {}),
  });
  if (opts["print-address"]) {
    process.stdout.write(`${JSON.stringify({ sender: getAddress(account.address) })}\n`);
    clearTimeout(watchdog);
    process.exit(0);
  }

  // Fund the counterfactual account so it pays for its own deployment and call.
  const fundingHash = await publicClient.request({
    method: "eth_sendTransaction",
    params: [{ from: FUNDER, to: account.address, value: `0x${FUNDING.toString(16)}` }],
  });
  const funding = await publicClient.waitForTransactionReceipt({ hash: fundingHash, timeout: 20_000 });
  if (funding.status !== "success") throw new Error(`funding transaction ${fundingHash} failed`);

  // The bundler is never retried: a rejection (by alto or by a proxy in front of
  // it) must surface as it is. The answer to eth_sendUserOperation is kept as it
  // came over the wire, with its round-trip time.
  let sent;
  const fetchFn = async (url, init) => {
    let method;
    try {
      method = JSON.parse(init.body).method;
    } catch {}
    const started = performance.now();
    const response = await fetch(url, init);
    if (method === "eth_sendUserOperation") {
      const elapsedMs = Math.round((performance.now() - started) * 10) / 10;
      let answer;
      try {
        answer = await response.clone().json();
      } catch {
        answer = { status: response.status, body: await response.clone().text() };
      }
      sent = { elapsedMs, answer };
    }
    return response;
  };
  const bundlerTransport = http(opts.bundler, { timeout: 30_000, retryCount: 0, fetchFn });
  const pimlico = createPimlicoClient({ transport: bundlerTransport, entryPoint });
  const client = createSmartAccountClient({
    account,
    chain,
    bundlerTransport,
    userOperation: {
      estimateFeesPerGas: async () => {
        const fast = (await pimlico.getUserOperationGasPrice()).fast;
        if (maxFeePerGas === undefined) return fast;
        const tip = fast.maxPriorityFeePerGas < maxFeePerGas ? fast.maxPriorityFeePerGas : maxFeePerGas;
        return { maxFeePerGas, maxPriorityFeePerGas: tip };
      },
    },
  });

  let userOpHash;
  try {
    userOpHash = await client.sendUserOperation({
      calls: [{ to: getAddress(opts.to), value, data: opts.data }],
    });
  } catch (err) {
    const error = sent?.answer?.error;
    if (!expectError || !error) throw err;
    const refused = { refused: true, sender: getAddress(account.address), elapsedMs: sent.elapsedMs, answer: sent.answer };
    process.stdout.write(`${JSON.stringify(refused)}\n`);
    clearTimeout(watchdog);
    const reason = error.data?.reason;
    if (expectReason !== undefined && reason !== expectReason) {
      die(`eth_sendUserOperation was refused with reason ${reason ?? "(none)"}, expected ${expectReason}`);
    }
    process.exit(0);
  }
  if (expectError) die(`UserOperation ${userOpHash} was accepted, but a refusal was expected`);
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
    actualGasCost: receipt.actualGasCost.toString(),
    sendElapsedMs: sent?.elapsedMs,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
  clearTimeout(watchdog);
  if (!receipt.success) die(`UserOperation ${userOpHash} was included but its execution reverted${receipt.reason ? `: ${receipt.reason}` : ""}`);
  process.exit(0);
}

main().catch((err) => die(describe(err)));
