// A dapp page as a user writes one: permissionless.js SimpleAccount (EntryPoint v0.7) on viem,
// bundlerTransport pointed at opgate. The page reads its settings from its URL:
//   ?bundler=<opgate URL, with the API key>&chain=<id>
// chain state is read through /rpc on the page's own server. It sends one UserOperation and
// leaves its outcome in window.outcome: {ok: true, userOpHash, success, transactionHash} or
// {ok: false, error, status}.
import { createPublicClient, defineChain, http, parseEther } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { createSmartAccountClient } from "permissionless";
import { toSimpleSmartAccount } from "permissionless/accounts";

const ENTRY_POINT_07 = "0x0000000071727De22E5E9d8BAf0edAc6f37da032";
const DEAD = "0x000000000000000000000000000000000000dEaD";

async function run() {
  const params = new URLSearchParams(window.location.search);
  const bundler = params.get("bundler");
  const id = Number(params.get("chain") ?? "31337");
  const rpc = `${window.location.origin}/rpc`;
  const chain = defineChain({
    id,
    name: "devnet",
    nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
    rpcUrls: { default: { http: [rpc] } },
  });
  const publicClient = createPublicClient({ chain, transport: http(rpc) });
  const owner = privateKeyToAccount(generatePrivateKey());
  const account = await toSimpleSmartAccount({
    client: publicClient,
    owner,
    entryPoint: { address: ENTRY_POINT_07, version: "0.7" },
  });
  // Fund the counterfactual account (anvil's own method, through the page's server).
  await publicClient.request({ method: "anvil_setBalance", params: [account.address, "0xde0b6b3a7640000"] });
  const client = createSmartAccountClient({
    account,
    chain,
    bundlerTransport: http(bundler, { retryCount: 0 }),
    userOperation: {
      estimateFeesPerGas: async () => {
        const fees = await publicClient.estimateFeesPerGas();
        return { maxFeePerGas: fees.maxFeePerGas * 2n, maxPriorityFeePerGas: fees.maxPriorityFeePerGas * 2n };
      },
    },
  });
  const userOpHash = await client.sendUserOperation({ calls: [{ to: DEAD, value: parseEther("0.001"), data: "0x" }] });
  const receipt = await client.waitForUserOperationReceipt({ hash: userOpHash, timeout: 60_000 });
  return { ok: true, userOpHash, success: receipt.success, transactionHash: receipt.receipt.transactionHash };
}

run()
  .then((r) => {
    window.outcome = r;
  })
  .catch((e) => {
    window.outcome = {
      ok: false,
      error: String(e?.shortMessage ?? e?.message ?? e),
      details: String(e?.details ?? ""),
      status: e?.status ?? e?.cause?.status ?? null,
    };
  });
