#!/usr/bin/env bash
# See it work: starts the devnet (anvil + EntryPoints + Alto), opgate in front of Alto, sends a
# UserOperation through opgate with a real SDK client (viem + permissionless.js), prints the
# answer and opgate's metrics, then stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

export DEVNET_DIR="${DEVNET_DIR:-$root/.devnet/demo}"
opgate_port="${OPGATE_PORT:-24337}"
metrics_port="${OPGATE_METRICS_PORT:-29464}"
opgate_pid=""

cleanup() {
  if [ -n "$opgate_pid" ] && kill -0 "$opgate_pid" 2>/dev/null; then
    kill -TERM "$opgate_pid" 2>/dev/null || true
    wait "$opgate_pid" 2>/dev/null || true
  fi
  scripts/devnet.sh down >/dev/null 2>&1 || true
}
trap cleanup EXIT

echo "==> building opgate (release)"
cargo build --release --locked --quiet --bin opgate
bin="${CARGO_TARGET_DIR:-$root/target}/release/opgate"

echo "==> starting the devnet"
scripts/devnet.sh up
set -a; . "$DEVNET_DIR/state.env"; set +a

echo "==> starting opgate on 127.0.0.1:$opgate_port in front of Alto ($BUNDLER_URL)"
RUST_LOG="${RUST_LOG:-info}" "$bin" serve --upstream "$BUNDLER_URL" --chain-id "$CHAIN_ID" \
  --listen "127.0.0.1:$opgate_port" --metrics-listen "127.0.0.1:$metrics_port" \
  >"$DEVNET_DIR/opgate.log" 2>&1 &
opgate_pid=$!
for _ in $(seq 1 100); do
  if curl -fsS "http://127.0.0.1:$opgate_port/readyz" >/dev/null 2>&1; then break; fi
  kill -0 "$opgate_pid" 2>/dev/null || { echo "opgate exited:"; cat "$DEVNET_DIR/opgate.log"; exit 1; }
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$opgate_port/readyz"; echo

echo "==> a SimpleAccount UserOperation (EntryPoint v0.7) through opgate"
node devnet/send-userop.mjs --bundler "http://127.0.0.1:$opgate_port/$CHAIN_ID" --rpc "$ANVIL_URL" --entry-point 0.7

echo "==> a method opgate does not relay"
curl -sS "http://127.0.0.1:$opgate_port/$CHAIN_ID" -H 'content-type: application/json' \
  -d '{"jsonrpc":"2.0","id":1,"method":"debug_bundler_clearState","params":[]}'; echo

echo "==> opgate metrics"
curl -fsS "http://127.0.0.1:$metrics_port/metrics" | grep -E '^opgate_(requests_total|upstream_requests_total)' | grep -v ' 0$'
echo "==> done; stopping opgate and the devnet"
