//! Helpers the load drivers share: environment options, the host's CPU accounting from
//! `/proc` (Linux), and number formatting. Included with `#[path]` by each bench.

/// One clock tick of `/proc` CPU times, in nanoseconds (USER_HZ = 100).
pub(crate) const TICK_NS: u64 = 10_000_000;

/// `name` from the environment parsed as `T`, or `default` when unset.
pub(crate) fn env_or<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
    match std::env::var(name) {
        Ok(v) => v.parse().map_err(|_| format!("{name}={v} is not a valid value")),
        Err(_) => Ok(default),
    }
}

/// The bench's parsed arguments; on a usage error, the message and exit status 2.
pub(crate) fn args_or_exit<T>(bench: &str, parsed: Result<T, String>) -> T {
    parsed.unwrap_or_else(|e| {
        eprintln!("{bench}: {e}");
        std::process::exit(2);
    })
}

/// A multi-thread tokio runtime: `workers` worker threads, or one per CPU.
pub(crate) fn runtime(workers: Option<usize>) -> tokio::runtime::Runtime {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = workers {
        builder.worker_threads(n);
    }
    builder.enable_all().build().expect("a tokio runtime")
}

/// Ends the bench: exit status 1 with the message when the run failed.
pub(crate) fn finish(bench: &str, outcome: Result<(), String>) {
    if let Err(e) = outcome {
        eprintln!("{bench}: {e}");
        std::process::exit(1);
    }
}

/// A comma-separated list of numbers (`1,4,16`).
#[allow(dead_code, reason = "the pass-through bench takes no list")]
pub(crate) fn parse_list(v: &str) -> Result<Vec<usize>, String> {
    v.split(',')
        .map(|c| c.trim().parse::<usize>().map_err(|_| format!("`{c}` is not a number")))
        .collect()
}

/// The bench's arguments, and whether this is a smoke run: no arguments and no
/// `OPGATE_BENCH_*` variable means neither `cargo bench` (which passes `--bench`) nor a person
/// choosing options, but `cargo test --benches` checking that the bench still works.
pub(crate) fn args_or_smoke() -> (Vec<String>, bool) {
    let given: Vec<String> = std::env::args().skip(1).collect();
    let smoke = given.is_empty() && !std::env::vars().any(|(k, _)| k.starts_with("OPGATE_BENCH_"));
    if smoke {
        eprintln!("smoke run (no arguments): the figures are not measurements; use `cargo bench`");
    }
    (given, smoke)
}

/// CPU time (user + system) this process has used so far, from `/proc/self/stat`, in
/// nanoseconds. Its resolution is one clock tick (10 ms), fine for runs of a second or more.
pub(crate) fn process_cpu() -> Option<u64> {
    cpu_of("self")
}

/// CPU time (user + system) process `pid` (a number, or `self`) has used so far, from
/// `/proc/<pid>/stat`, in nanoseconds; `None` when it cannot be read.
pub(crate) fn cpu_of(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some((user + system) * TICK_NS)
}

/// Busy and total CPU time of the whole machine so far, in clock ticks, from `/proc/stat`.
pub(crate) fn machine_cpu() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line.split_whitespace().filter_map(|f| f.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal
    let [user, nice, system, idle, iowait, irq, softirq, steal, ..] = v[..] else {
        return None;
    };
    let busy = user + nice + system + irq + softirq + steal;
    Some((busy, busy + idle + iowait))
}

/// The 1, 5 and 15 minute load averages.
pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "n/a".into())
}

/// Nanoseconds as microseconds with one decimal.
pub(crate) fn us(ns: u64) -> String {
    format!("{:.1}", ns as f64 / 1_000.0)
}
