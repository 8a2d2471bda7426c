# Sourced by the bench scripts: prints the machine and toolchain a run's figures come from.
bench_machine() {
  local cpu mem
  cpu=$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//' || true)
  mem=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo 2>/dev/null || true)
  echo "machine: $(nproc) CPUs, ${cpu:-unknown CPU}, ${mem:-unknown} memory"
  echo "toolchain: $(rustc --version)"
}
