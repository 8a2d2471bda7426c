#!/usr/bin/env bash
# Send-decision benchmark: decode + policies + the Redis reservation of eth_sendUserOperation,
# upstream excluded, in one process (see benches/decision.rs and BENCHMARKS.md): first against one
# Redis server, then against a Redis Cluster of 3 primaries and 3 replicas that this script starts
# on 127.0.0.1, in the same run, with a side-by-side summary at the end.
#
# Usage: scripts/bench-decision.sh [--no-cluster] [bench options]
#   e.g. --reps 5 --concurrency 1,8,32 --redis redis://127.0.0.1:6380
#   --no-cluster   measure the single server only (no cluster is started)
# Options may also come from OPGATE_BENCH_* environment variables; `--help` lists them.
#
# Needs a Redis server (default redis://127.0.0.1:6379, or --redis URL) and, for the cluster,
# `redis-server` and `redis-cli` (7.x) on the PATH. The cluster's 6 nodes listen on free ports in
# 17000-17999 (each with its bus port, +10000, free too), bind 127.0.0.1 only, and live in their
# own `mktemp -d` dirs, without persistence; on exit (success, failure or interrupt) the script
# kills exactly those processes by pid and removes the dirs. The bench writes only under key
# prefixes of its own and deletes those keys at the end. The tables go to stdout; build output and
# per-run progress go to stderr. Other work on the machine skews the figures: the load average is
# printed before, and the report gives the CPU share other processes took during the runs.
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER_NODES=6
CLUSTER_PORT_MIN=17000
CLUSTER_PORT_MAX=17999
CLUSTER_BUS_OFFSET=10000

cluster=1
redis_given=0
bench_args=()
for arg in "$@"; do
  case "$arg" in
    --no-cluster) cluster=0 ;;
    --help | -h) cluster=0; bench_args+=("$arg") ;;
    --redis) redis_given=1; bench_args+=("$arg") ;;
    *) bench_args+=("$arg") ;;
  esac
done

source scripts/bench-machine.sh
bench_machine
if command -v redis-server >/dev/null 2>&1; then
  echo "redis: $(redis-server --version | cut -d' ' -f1-3)"
fi
echo "load average before build: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo n/a)"

cargo build --release --locked --quiet
cargo bench --locked --quiet --bench decision --no-run

# ---------------------------------------------------------------------------------------------
# The cluster: started here, stopped on exit

node_pids=()
node_dirs=()
node_ports=()

stop_cluster() {
  local pid dir
  for pid in "${node_pids[@]+"${node_pids[@]}"}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${node_pids[@]+"${node_pids[@]}"}"; do
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  for dir in "${node_dirs[@]+"${node_dirs[@]}"}"; do
    rm -rf -- "$dir"
  done
}
trap stop_cluster EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

cli() { # cli PORT ARGS...: redis-cli against 127.0.0.1:PORT, bounded
  local port=$1
  shift
  timeout -k 2 5 redis-cli -h 127.0.0.1 -p "$port" "$@"
}

listening() { # listening PORT: whether something listens on 127.0.0.1:PORT (or any address)
  if command -v ss >/dev/null 2>&1; then
    [[ -n "$(ss -Htln "sport = :$1" 2>/dev/null)" ]]
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
  fi
}

# The next port (from a random start, wrapping) whose bus port is free too: sets `port`.
port_cursor=$((RANDOM % (CLUSTER_PORT_MAX - CLUSTER_PORT_MIN + 1)))
next_port() {
  local span=$((CLUSTER_PORT_MAX - CLUSTER_PORT_MIN + 1)) i candidate
  for ((i = 0; i < span; i++)); do
    candidate=$((CLUSTER_PORT_MIN + port_cursor))
    port_cursor=$(((port_cursor + 1) % span))
    if ! listening "$candidate" && ! listening "$((candidate + CLUSTER_BUS_OFFSET))"; then
      port=$candidate
      return 0
    fi
  done
  echo "bench-decision: no free port pair in $CLUSTER_PORT_MIN-$CLUSTER_PORT_MAX" >&2
  return 1
}

# Starts one cluster node on a free port (another one if it loses the port meanwhile).
start_node() {
  local attempt dir pid
  for attempt in 1 2 3; do
    next_port
    dir=$(mktemp -d "${TMPDIR:-/tmp}/opgate-bench-cluster.XXXXXX")
    node_dirs+=("$dir")
    cat >"$dir/redis.conf" <<EOF
port $port
bind 127.0.0.1
protected-mode no
dir $dir
logfile $dir/redis.log
cluster-enabled yes
cluster-config-file $dir/nodes.conf
cluster-node-timeout 2000
save ""
appendonly no
repl-diskless-sync-delay 0
EOF
    redis-server "$dir/redis.conf" >/dev/null 2>&1 &
    pid=$!
    node_pids+=("$pid")
    for _ in $(seq 100); do
      if [[ "$(cli "$port" ping 2>/dev/null)" == PONG ]]; then
        node_ports+=("$port")
        return 0
      fi
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    echo "bench-decision: redis-server on port $port did not start (attempt $attempt):" >&2
    tail -n 5 "$dir/redis.log" >&2 2>/dev/null || true
    kill "$pid" 2>/dev/null || true
  done
  return 1
}

# Every node sees the cluster whole: slots covered, 6 nodes, 3 primaries and 3 replicas, and every
# replica's link to its primary up.
cluster_settled() {
  local p info nodes
  for p in "${node_ports[@]}"; do
    info=$(cli "$p" cluster info 2>/dev/null) || return 1
    grep -q '^cluster_state:ok' <<<"$info" || return 1
    grep -q "^cluster_known_nodes:$CLUSTER_NODES" <<<"$info" || return 1
    nodes=$(cli "$p" cluster nodes 2>/dev/null) || return 1
    [[ $(grep -c ' master ' <<<"$(sed 's/,/ /g' <<<"$nodes")") -eq $((CLUSTER_NODES / 2)) ]] || return 1
    [[ $(grep -c ' slave ' <<<"$(sed 's/,/ /g' <<<"$nodes")") -eq $((CLUSTER_NODES / 2)) ]] || return 1
    info=$(cli "$p" info replication 2>/dev/null) || return 1
    if grep -q '^role:slave' <<<"$info"; then
      grep -q '^master_link_status:up' <<<"$info" || return 1
    fi
  done
}

start_cluster() {
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null || {
    echo "bench-decision: the cluster needs redis-server and redis-cli (or pass --no-cluster)" >&2
    return 1
  }
  local i addrs=() settled=0
  for ((i = 0; i < CLUSTER_NODES; i++)); do
    start_node
  done
  for p in "${node_ports[@]}"; do
    addrs+=("127.0.0.1:$p")
  done
  if ! timeout -k 5 60 redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes \
    >"${node_dirs[0]}/create.log" 2>&1; then
    echo "bench-decision: redis-cli --cluster create failed:" >&2
    tail -n 20 "${node_dirs[0]}/create.log" >&2
    return 1
  fi
  for _ in $(seq 300); do
    if cluster_settled; then
      settled=1
      break
    fi
    sleep 0.1
  done
  if [[ $settled != 1 ]]; then
    echo "bench-decision: the cluster did not settle within 30 s; node 1 says:" >&2
    cli "${node_ports[0]}" cluster nodes >&2 || true
    return 1
  fi
  # The first three nodes are the primaries `--cluster create` made; any node serves as a seed.
  cluster_url="redis+cluster://127.0.0.1:${node_ports[0]},127.0.0.1:${node_ports[1]},127.0.0.1:${node_ports[2]}"
  echo "redis cluster: $CLUSTER_NODES redis-server processes (pids ${node_pids[*]}) on ${addrs[*]}, 3 primaries and 3 replicas"
}

targets=()
if [[ $cluster == 1 ]]; then
  start_cluster
  if [[ $redis_given == 0 ]]; then
    # The single server first: the default (or OPGATE_BENCH_REDIS's), named so that the cluster
    # does not replace it.
    for url in ${OPGATE_BENCH_REDIS:-redis://127.0.0.1:6379}; do
      targets+=(--redis "$url")
    done
  fi
  targets+=(--redis "$cluster_url")
fi

cargo bench --locked --bench decision -- "${bench_args[@]+"${bench_args[@]}"}" "${targets[@]+"${targets[@]}"}"
