#!/usr/bin/env bash
# Local ERC-4337 devnet: anvil + EntryPoint v0.6/v0.7/v0.8 + SimpleAccountFactory
# at their canonical addresses + the Alto bundler, all on 127.0.0.1.
#
#   scripts/devnet.sh up       start (installs devnet/node_modules with npm ci if missing)
#   scripts/devnet.sh down     stop the processes that `up` started, by their pid files
#   scripts/devnet.sh status   show what runs; exit 0 only if both processes run (or anvil
#                              alone, when it was started with DEVNET_NO_BUNDLER=1)
#
# Environment:
#   DEVNET_DIR            state directory (default: <repo>/.devnet)
#   DEVNET_ANVIL_PORT     anvil port (default 18545)
#   DEVNET_BUNDLER_PORT   alto port (default 14337; opgate itself defaults to 4337)
#   DEVNET_WAIT_SECONDS   how long `up` waits for each server (default 60)
#   DEVNET_ALTO_ARGS      extra arguments for alto, split on whitespace
#   DEVNET_NO_BUNDLER     1: start anvil and deploy, but no alto (BUNDLER_URL is empty in
#                         state.env; for the simulation bench, which reads only the node)
#
# State written by `up` into DEVNET_DIR: anvil.pid, alto.pid, anvil.log, alto.log,
# deploy.log, state.env (KEY=VALUE lines) and state.json (the same keys).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
DEVNET_SRC="$REPO_ROOT/devnet"

HOST=127.0.0.1
CHAIN_ID=31337
ANVIL_PORT="${DEVNET_ANVIL_PORT:-18545}"
BUNDLER_PORT="${DEVNET_BUNDLER_PORT:-14337}"
WAIT_SECONDS="${DEVNET_WAIT_SECONDS:-60}"
NO_BUNDLER="${DEVNET_NO_BUNDLER:-0}"
STOP_WAIT_SECONDS=10
ANVIL_URL="http://$HOST:$ANVIL_PORT"
BUNDLER_URL="http://$HOST:$BUNDLER_PORT"

# anvil's default accounts (the public "test ... junk" mnemonic), funded at genesis.
# #0 deploys contracts and funds test accounts through eth_sendTransaction;
# #1 and #2 belong to alto alone, so nothing else disturbs their nonces.
FUNDER_ADDRESS=0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266
EXECUTOR_KEY=0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d
EXECUTOR_ADDRESS=0x70997970C51812dc3A010C7d01b50e0d17dc79C8
UTILITY_KEY=0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a
UTILITY_ADDRESS=0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC

ANVIL_BIN="$DEVNET_SRC/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
ALTO_JS="$DEVNET_SRC/node_modules/@pimlico/alto/esm/cli/alto.js"

log() { printf 'devnet: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

state_dir() {
  local dir="${DEVNET_DIR:-$REPO_ROOT/.devnet}"
  mkdir -p "$dir"
  (cd "$dir" && pwd)
}

# pid_of NAME: the pid in NAME.pid if that process is alive and is the one we
# started (its command line still names it), else nothing.
pid_of() {
  local name="$1" file="$STATE/$1.pid" pid marker
  [[ -f "$file" ]] || return 0
  pid="$(tr -cd '0-9' <"$file")"
  [[ -n "$pid" ]] || return 0
  case "$name" in
    anvil) marker="anvil" ;;
    alto) marker="alto.js" ;;
  esac
  alive "$pid" || return 0
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$marker" || return 0
  echo "$pid"
}

# alive PID: the process exists and is not a zombie.
alive() {
  local state
  [[ -r "/proc/$1/stat" ]] || return 1
  state="$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)"
  [[ -n "$state" && "$state" != "Z" && "$state" != "X" ]]
}

# rpc URL METHOD: prints the JSON-RPC result, fails on any error (2 s timeout).
rpc() {
  node -e '
    const [url, method] = process.argv.slice(1);
    fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, params: [] }),
      signal: AbortSignal.timeout(2000),
    })
      .then((r) => r.json())
      .then((j) => {
        if (j.error || j.result === undefined) process.exit(1);
        console.log(JSON.stringify(j.result));
      })
      .catch(() => process.exit(1));
  ' "$1" "$2"
}

port_in_use() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

show_log_tail() {
  local file="$1"
  if [[ -f "$file" ]]; then
    log "last lines of $file:"
    tail -n 40 "$file" | sed 's/^/    /' >&2
  fi
}

# wait_for NAME PID LOG URL METHOD EXPECT: polls until the RPC result contains
# EXPECT, at most WAIT_SECONDS; fails at once if the process has died.
wait_for() {
  local name="$1" pid="$2" logfile="$3" url="$4" method="$5" expect="$6"
  local attempts=$((WAIT_SECONDS * 4)) i result
  for ((i = 0; i < attempts; i++)); do
    if ! alive "$pid"; then
      log "$name (pid $pid) exited during startup"
      show_log_tail "$logfile"
      return 1
    fi
    if result="$(rpc "$url" "$method")" && [[ "$result" == *"$expect"* ]]; then
      return 0
    fi
    sleep 0.25
  done
  log "$name did not answer $method at $url within ${WAIT_SECONDS}s"
  show_log_tail "$logfile"
  return 1
}

# stop NAME: TERM the recorded process, KILL it if it outlives STOP_WAIT_SECONDS.
stop() {
  local name="$1" pid i
  pid="$(pid_of "$name")"
  if [[ -z "$pid" ]]; then
    [[ -f "$STATE/$name.pid" ]] && log "$name: not running (removing stale pid file)"
    rm -f "$STATE/$name.pid"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < STOP_WAIT_SECONDS * 10; i++)); do
    alive "$pid" || break
    sleep 0.1
  done
  if alive "$pid"; then
    log "$name (pid $pid) ignored SIGTERM for ${STOP_WAIT_SECONDS}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      alive "$pid" || break
      sleep 0.1
    done
  fi
  alive "$pid" && die "$name (pid $pid) is still running"
  rm -f "$STATE/$name.pid"
  log "$name stopped (pid $pid)"
}

write_state() {
  local deploy_out="$1" anvil_pid="$2" alto_pid="$3" tmp="$STATE/state.env.tmp"
  {
    echo "ANVIL_URL=$ANVIL_URL"
    if [[ -n "$alto_pid" ]]; then echo "BUNDLER_URL=$BUNDLER_URL"; else echo "BUNDLER_URL="; fi
    echo "CHAIN_ID=$CHAIN_ID"
    echo "ANVIL_PORT=$ANVIL_PORT"
    echo "BUNDLER_PORT=$BUNDLER_PORT"
    grep -E '^(ENTRYPOINT|FACTORY)_0[678]=0x[0-9a-fA-F]{40}$' "$deploy_out"
    echo "FUNDER_ADDRESS=$FUNDER_ADDRESS"
    echo "EXECUTOR_ADDRESS=$EXECUTOR_ADDRESS"
    echo "UTILITY_ADDRESS=$UTILITY_ADDRESS"
    echo "ANVIL_PID=$anvil_pid"
    echo "BUNDLER_PID=$alto_pid"
  } >"$tmp"
  node -e '
    const fs = require("node:fs");
    const out = {};
    for (const line of fs.readFileSync(process.argv[1], "utf8").split("\n")) {
      const m = /^([A-Z0-9_]+)=(.*)$/.exec(line);
      if (m) out[m[1]] = /^[0-9]+$/.test(m[2]) ? Number(m[2]) : m[2];
    }
    fs.writeFileSync(process.argv[2], JSON.stringify(out, null, 2) + "\n");
  ' "$tmp" "$STATE/state.json.tmp"
  mv "$STATE/state.json.tmp" "$STATE/state.json"
  mv "$tmp" "$STATE/state.env"
}

UP_DONE=0
UP_STARTED=()
up_cleanup() {
  [[ "$UP_DONE" == 1 ]] && return 0
  local i
  if ((${#UP_STARTED[@]})); then
    log "startup failed; stopping what was started"
    for ((i = ${#UP_STARTED[@]} - 1; i >= 0; i--)); do stop "${UP_STARTED[i]}" || true; done
  fi
  rm -f "$STATE/deploy.out"
}

cmd_up() {
  STATE="$(state_dir)"
  local anvil_pid alto_pid
  anvil_pid="$(pid_of anvil)"
  alto_pid="$(pid_of alto)"
  if [[ -n "$anvil_pid" && ( -n "$alto_pid" || "$NO_BUNDLER" == 1 ) ]]; then
    log "already up (anvil pid $anvil_pid, alto pid ${alto_pid:-none}); state in $STATE"
    return 0
  fi
  if [[ -n "$anvil_pid" || -n "$alto_pid" ]]; then
    die "partly up (anvil pid ${anvil_pid:-none}, alto pid ${alto_pid:-none}); run '$0 down' first"
  fi
  rm -f "$STATE/anvil.pid" "$STATE/alto.pid" "$STATE/state.env" "$STATE/state.json"

  # Several devnets may start at once (parallel tests): one installs, the others wait for it.
  (
    flock 9
    if [[ ! -d "$DEVNET_SRC/node_modules" || ! -x "$ANVIL_BIN" || ! -f "$ALTO_JS" \
      || ! -f "$DEVNET_SRC/node_modules/solc/package.json" ]]; then
      log "installing devnet dependencies (npm ci)"
      (cd "$DEVNET_SRC" && npm ci --no-audit --no-fund) >&2
    fi
  ) 9>"$DEVNET_SRC/.install.lock"
  [[ -x "$ANVIL_BIN" ]] || die "anvil binary missing at $ANVIL_BIN (is this linux x64?)"
  [[ -f "$ALTO_JS" ]] || die "alto missing at $ALTO_JS"

  port_in_use "$ANVIL_PORT" && die "port $ANVIL_PORT (DEVNET_ANVIL_PORT) is already in use"
  if [[ "$NO_BUNDLER" != 1 ]] && port_in_use "$BUNDLER_PORT"; then
    die "port $BUNDLER_PORT (DEVNET_BUNDLER_PORT) is already in use"
  fi

  trap up_cleanup EXIT

  log "starting anvil on $ANVIL_URL (chain id $CHAIN_ID)"
  nohup "$ANVIL_BIN" --host "$HOST" --port "$ANVIL_PORT" --chain-id "$CHAIN_ID" \
    </dev/null >"$STATE/anvil.log" 2>&1 &
  anvil_pid=$!
  echo "$anvil_pid" >"$STATE/anvil.pid"
  UP_STARTED+=(anvil)
  wait_for anvil "$anvil_pid" "$STATE/anvil.log" "$ANVIL_URL" eth_chainId '"0x7a69"'

  log "deploying EntryPoints and SimpleAccountFactories"
  if ! node "$DEVNET_SRC/deploy.mjs" --rpc "$ANVIL_URL" >"$STATE/deploy.out" 2>"$STATE/deploy.log"; then
    show_log_tail "$STATE/deploy.log"
    die "deployment failed"
  fi
  cat "$STATE/deploy.log" >&2
  local ep06 ep07 ep08
  ep06="$(sed -n 's/^ENTRYPOINT_06=//p' "$STATE/deploy.out")"
  ep07="$(sed -n 's/^ENTRYPOINT_07=//p' "$STATE/deploy.out")"
  ep08="$(sed -n 's/^ENTRYPOINT_08=//p' "$STATE/deploy.out")"
  [[ -n "$ep06" && -n "$ep07" && -n "$ep08" ]] || die "deploy.mjs printed no EntryPoint addresses"

  if [[ "$NO_BUNDLER" == 1 ]]; then
    write_state "$STATE/deploy.out" "$anvil_pid" ""
    rm -f "$STATE/deploy.out"
    UP_DONE=1
    trap - EXIT
    log "up: anvil $ANVIL_URL (pid $anvil_pid), no bundler (DEVNET_NO_BUNDLER=1)"
    log "state: $STATE/state.env and $STATE/state.json"
    return 0
  fi

  log "starting alto on $BUNDLER_URL"
  local -a extra=()
  if [[ -n "${DEVNET_ALTO_ARGS:-}" ]]; then
    read -r -a extra <<<"$DEVNET_ALTO_ARGS"
  fi
  # --json: alto's pretty logger forces ANSI colours, which make the log file hard to read.
  nohup node --require "$DEVNET_SRC/loopback.cjs" "$ALTO_JS" \
    --rpc-url "$ANVIL_URL" \
    --entrypoints "$ep06,$ep07,$ep08" \
    --executor-private-keys "$EXECUTOR_KEY" \
    --utility-private-key "$UTILITY_KEY" \
    --safe-mode false \
    --port "$BUNDLER_PORT" \
    --public-client-log-level warn \
    --wallet-client-log-level warn \
    --json \
    "${extra[@]}" \
    </dev/null >"$STATE/alto.log" 2>&1 &
  alto_pid=$!
  echo "$alto_pid" >"$STATE/alto.pid"
  UP_STARTED+=(alto)
  wait_for alto "$alto_pid" "$STATE/alto.log" "$BUNDLER_URL" eth_supportedEntryPoints "$ep07"

  write_state "$STATE/deploy.out" "$anvil_pid" "$alto_pid"
  rm -f "$STATE/deploy.out"
  UP_DONE=1
  trap - EXIT
  log "up: anvil $ANVIL_URL (pid $anvil_pid), alto $BUNDLER_URL (pid $alto_pid)"
  log "state: $STATE/state.env and $STATE/state.json"
}

cmd_down() {
  STATE="$(state_dir)"
  stop alto
  stop anvil
  rm -f "$STATE/state.env" "$STATE/state.json"
}

cmd_status() {
  STATE="$(state_dir)"
  local rc=0 pid name url method key
  for name in anvil alto; do
    if [[ "$name" == anvil ]]; then
      url="$ANVIL_URL" method=eth_chainId key=ANVIL_URL
    else
      url="$BUNDLER_URL" method=eth_supportedEntryPoints key=BUNDLER_URL
    fi
    # The running devnet may have been started with other ports than this shell has.
    if [[ -f "$STATE/state.env" ]]; then
      url="$(sed -n "s/^$key=//p" "$STATE/state.env")"
      if [[ -z "$url" ]]; then
        echo "$name: not started (DEVNET_NO_BUNDLER=1)"
        continue
      fi
    fi
    pid="$(pid_of "$name")"
    if [[ -z "$pid" ]]; then
      echo "$name: not running"
      rc=1
    elif rpc "$url" "$method" >/dev/null; then
      echo "$name: running, pid $pid, $url answers $method"
    else
      echo "$name: running, pid $pid, but $url does not answer $method"
      rc=1
    fi
  done
  if [[ -f "$STATE/state.env" ]]; then
    echo "state: $STATE/state.env"
    sed 's/^/  /' "$STATE/state.env"
  fi
  return "$rc"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *)
    echo "usage: $0 up|down|status" >&2
    exit 2
    ;;
esac
