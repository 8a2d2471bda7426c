#!/usr/bin/env bash
# See it work: starts the devnet (anvil + EntryPoints + Alto) and opgate in front of Alto with the
# operator policies of config/demo.toml, then sends UserOperations through opgate with a real SDK
# client (viem + permissionless.js SimpleAccount):
#
#   1. an op that passes: relayed to Alto and mined (receipt printed);
#   2. a second op of the same account: refused at once by `one-op-per-account` (RateLimited);
#   3. an op that could cost more than 0.01 ether: refused by `gas-cap` (GasBudgetExceeded);
#   4. an op of an account the operator revoked through the admin API: refused (Revoked);
#
# prints each JSON-RPC answer and opgate's decision metrics, checks them, and stops everything
# it started.
#
# Environment: OPGATE_PORT (24337), OPGATE_METRICS_PORT (29464), OPGATE_ADMIN_PORT (29465),
# DEVNET_DIR (.devnet/demo), DEVNET_ANVIL_PORT, DEVNET_BUNDLER_PORT (see scripts/devnet.sh),
# DEMO_STORE=memory|redis (memory) and DEMO_REDIS_URL (redis://127.0.0.1:6379).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

export DEVNET_DIR="${DEVNET_DIR:-$root/.devnet/demo}"
opgate_port="${OPGATE_PORT:-24337}"
metrics_port="${OPGATE_METRICS_PORT:-29464}"
export DEMO_ADMIN_PORT="${OPGATE_ADMIN_PORT:-29465}"
export DEMO_STORE="${DEMO_STORE:-memory}"
export DEMO_REDIS_URL="${DEMO_REDIS_URL:-redis://127.0.0.1:6379}"
random_hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }
# A prefix of this run's own, so Redis counters of earlier runs (same keys, same accounts) never
# count, and cleanup deletes exactly this run's keys.
export DEMO_STORE_PREFIX="opgate-demo-$(random_hex 6):"
export DEMO_ADMIN_TOKEN="demo-$(random_hex 16)"
config=config/demo.toml
admin_url="http://127.0.0.1:$DEMO_ADMIN_PORT"
opgate_pid=""
devnet_started=0

case "$DEMO_STORE" in
  memory | redis) ;;
  *) echo "DEMO_STORE must be memory or redis" >&2; exit 2 ;;
esac

stop_opgate() {
  [ -n "$opgate_pid" ] || return 0
  if kill -0 "$opgate_pid" 2>/dev/null; then
    kill -TERM "$opgate_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
      kill -0 "$opgate_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -0 "$opgate_pid" 2>/dev/null && kill -KILL "$opgate_pid" 2>/dev/null
  fi
  wait "$opgate_pid" 2>/dev/null || true
  opgate_pid=""
}

cleanup() {
  stop_opgate
  if [ "$devnet_started" = 1 ]; then
    scripts/devnet.sh down >/dev/null 2>&1 || true
  fi
  if [ "$DEMO_STORE" = redis ] && command -v redis-cli >/dev/null; then
    redis-cli -u "$DEMO_REDIS_URL" --scan --pattern "{$DEMO_STORE_PREFIX}*" 2>/dev/null |
      xargs -r -n 100 redis-cli -u "$DEMO_REDIS_URL" del >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for port in "$opgate_port" "$metrics_port" "$DEMO_ADMIN_PORT"; do
  if port_in_use "$port"; then
    echo "port $port is in use; set OPGATE_PORT, OPGATE_METRICS_PORT or OPGATE_ADMIN_PORT" >&2
    exit 1
  fi
done

# show: pretty-prints the one-line JSON answers of send-userop.mjs.
show() {
  node -e '
    let text = "";
    process.stdin.on("data", (d) => (text += d)).on("end", () => {
      for (const line of text.trim().split("\n").filter(Boolean)) {
        const v = JSON.parse(line);
        if (v.refused) {
          console.log(`refused in ${v.elapsedMs} ms (sender ${v.sender}); the JSON-RPC answer:`);
          console.log(JSON.stringify(v.answer, null, 2));
        } else if (v.transactionHash) {
          console.log(`mined: block ${v.blockNumber}, transaction ${v.transactionHash}`);
          console.log(`userOpHash ${v.userOpHash}, sender ${v.sender}, success ${v.success}, ` +
            `actualGasCost ${v.actualGasCost} wei, eth_sendUserOperation answered in ${v.sendElapsedMs} ms`);
        } else {
          console.log(JSON.stringify(v, null, 2));
        }
      }
    });'
}

# send ARGS...: one UserOperation through opgate (EntryPoint v0.7); prints its answer.
send() {
  local out
  out=$(node devnet/send-userop.mjs --bundler "http://127.0.0.1:$opgate_port/$CHAIN_ID" --rpc "$ANVIL_URL" \
    --entry-point 0.7 --timeout 90 "$@")
  printf '%s\n' "$out" | show
}

echo "==> building opgate (release)"
cargo build --release --locked --quiet --bin opgate
bin="${CARGO_TARGET_DIR:-$root/target}/release/opgate"

echo "==> starting the devnet"
devnet_started=1
scripts/devnet.sh up
set -a; . "$DEVNET_DIR/state.env"; set +a
if [ "$CHAIN_ID" != 31337 ]; then
  echo "$config is written for chain 31337; the devnet runs chain $CHAIN_ID" >&2
  exit 1
fi

if [ "$DEMO_STORE" = redis ]; then
  # Only the backend differs; the prefix keeps this run's keys apart from anyone else's.
  config="$DEVNET_DIR/demo-redis.toml"
  sed 's/^backend = "memory"$/backend = "redis"/' config/demo.toml >"$config"
  grep -q '^backend = "redis"$' "$config" || { echo "cannot switch $config to Redis" >&2; exit 1; }
fi

echo "==> the operator policies ($config)"
"$bin" check-config "$config"
sed -n '/^\[\[policies\]\]/,$p' "$config" | grep -v '^#' | sed 's/^/    /'

echo "==> starting opgate on 127.0.0.1:$opgate_port in front of Alto ($BUNDLER_URL), store: $DEMO_STORE"
RUST_LOG="${RUST_LOG:-info}" "$bin" serve --config "$config" \
  --listen "127.0.0.1:$opgate_port" --metrics-listen "127.0.0.1:$metrics_port" \
  >"$DEVNET_DIR/opgate.log" 2>&1 &
opgate_pid=$!
for i in $(seq 1 100); do
  if curl -fsS "http://127.0.0.1:$opgate_port/readyz" >/dev/null 2>&1; then break; fi
  kill -0 "$opgate_pid" 2>/dev/null || { echo "opgate exited:"; cat "$DEVNET_DIR/opgate.log"; exit 1; }
  [ "$i" = 100 ] && { echo "opgate is not ready after 10 s:"; cat "$DEVNET_DIR/opgate.log"; exit 1; }
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$opgate_port/readyz"; echo

owner=0x$(random_hex 32)
echo
echo "==> 1. a new SimpleAccount deploys itself and sends 12345 wei: passes, relayed, mined"
send --owner-key "$owner"

echo
echo "==> 2. the same account sends again: one-op-per-account refuses it; it is never relayed"
send --owner-key "$owner" --expect-reason RateLimited

echo
echo "==> 3. a new account offers up to 500 gwei per gas: gas-cap refuses it (max cost > 0.01 ether)"
send --owner-key "0x$(random_hex 32)" --max-fee-per-gas 500000000000 --expect-reason GasBudgetExceeded

echo
echo "==> 4. the operator revokes an account through the admin API; its first op is refused"
revoked_owner=0x$(random_hex 32)
revoked=$(node devnet/send-userop.mjs --rpc "$ANVIL_URL" --bundler "http://127.0.0.1:$opgate_port/$CHAIN_ID" \
  --owner-key "$revoked_owner" --print-address | node -e 'process.stdin.on("data", (d) => console.log(JSON.parse(d).sender))')
echo "POST $admin_url/v1/revocations {\"sender\":\"$revoked\"}"
curl -fsS "$admin_url/v1/revocations" -H "authorization: Bearer $DEMO_ADMIN_TOKEN" \
  -H 'content-type: application/json' -d "{\"sender\":\"$revoked\"}"; echo
send --owner-key "$revoked_owner" --expect-reason Revoked

echo
echo "==> a method opgate does not relay"
curl -sS "http://127.0.0.1:$opgate_port/$CHAIN_ID" -H 'content-type: application/json' \
  -d '{"jsonrpc":"2.0","id":1,"method":"debug_bundler_clearState","params":[]}'; echo

echo
echo "==> opgate's decision metrics"
metrics=$(curl -fsS "http://127.0.0.1:$metrics_port/metrics")
printf '%s\n' "$metrics" |
  grep -E '^opgate_(decisions_total|reservations_total|stage_duration_seconds_count|requests_total\{[^}]*eth_sendUserOperation)' |
  grep -v ' 0$'

# The demo checks what it shows: one op accepted, one refusal of each kind.
expect() {
  local series="$1" want="$2" got
  got=$(printf '%s\n' "$metrics" | grep -F "$series " | awk '{print $NF}' || true)
  if [ "$got" != "$want" ]; then
    echo "expected $series $want, found ${got:-nothing}" >&2
    exit 1
  fi
}
expect "opgate_decisions_total{chain=\"$CHAIN_ID\",outcome=\"accepted\",policy=\"none\",reason=\"none\",tenant=\"none\"}" 1
expect "opgate_decisions_total{chain=\"$CHAIN_ID\",outcome=\"rejected\",policy=\"one-op-per-account\",reason=\"RateLimited\",tenant=\"none\"}" 1
expect "opgate_decisions_total{chain=\"$CHAIN_ID\",outcome=\"rejected\",policy=\"gas-cap\",reason=\"GasBudgetExceeded\",tenant=\"none\"}" 1
expect "opgate_decisions_total{chain=\"$CHAIN_ID\",outcome=\"rejected\",policy=\"revocation\",reason=\"Revoked\",tenant=\"none\"}" 1

echo
echo "==> done; stopping opgate and the devnet"
