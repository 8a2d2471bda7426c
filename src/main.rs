//! The `opgate` command line: `serve`, `check-config`, `decode`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use opgate::app::App;
use opgate::config::{Config, LogFormat, Overrides};

/// mimalloc instead of the system allocator: decoding an op allocates a few dozen small buffers
/// (members, byte strings, policies), and mimalloc's thread-local free lists make each of them
/// several times cheaper than glibc's malloc (BENCHMARKS.md, "Decoding").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "opgate", version, about = "A policy-enforcing proxy for ERC-4337 bundlers")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve JSON-RPC in front of one or more upstream bundlers.
    Serve(ServeArgs),
    /// Validate a configuration file and exit.
    CheckConfig {
        /// The TOML file.
        file: PathBuf,
    },
    /// Decode an eth_sendUserOperation request body, its params array, or a bare UserOperation
    /// (with --entry-point) and print what opgate understands of it as one JSON object.
    Decode {
        /// Chain id (needed for the userOpHash and the enable digest).
        #[arg(long)]
        chain_id: Option<u64>,
        /// EntryPoint address (required for a bare UserOperation; overrides params[1]).
        #[arg(long, value_name = "ADDR")]
        entry_point: Option<alloy_primitives::Address>,
        /// The JSON file, or - for standard input.
        file: PathBuf,
    },
    /// Exit 0 when a running opgate answers its /healthz (for container health checks; the slim
    /// image has no curl).
    Health {
        /// The listener to ask.
        #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:4337/healthz")]
        url: String,
        /// How long to wait for the answer.
        #[arg(long, value_name = "SECONDS", default_value_t = 3)]
        timeout: u64,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Configuration file (TOML). Flags override it.
    #[arg(long, env = "OPGATE_CONFIG")]
    config: Option<PathBuf>,
    /// Upstream bundler URL; repeat for failover order.
    #[arg(long = "upstream", value_name = "URL")]
    upstreams: Vec<String>,
    /// JSON-RPC listen address [default: 127.0.0.1:4337].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Prometheus metrics listen address [default: 127.0.0.1:9464].
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
    /// Chain id of the upstreams given with --upstream (asked of the upstream when omitted).
    #[arg(long)]
    chain_id: Option<u64>,
    /// JSON-RPC node of the chain given by --chain-id (or of the only chain): turns on
    /// simulation of every operation against its state.
    #[arg(long, value_name = "URL")]
    node: Option<String>,
    /// PEM file of certificate authorities trusted for https upstreams and nodes, besides the
    /// public web roots (replaces `[tls] ca_file`).
    #[arg(long, env = "OPGATE_TLS_CA_FILE", value_name = "FILE")]
    tls_ca_file: Option<String>,
    /// Log format: pretty or json [default: pretty]. Filter with RUST_LOG.
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<LogFormat>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { file } => match Config::load(&file, &Overrides::default()) {
            Ok(config) => {
                println!("{}: ok ({} chain(s))", file.display(), config.chains.len());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("opgate: {e}");
                ExitCode::from(2)
            }
        },
        Command::Serve(args) => serve(args),
        Command::Decode {
            chain_id,
            entry_point,
            file,
        } => decode(&file, entry_point, chain_id),
        Command::Health { url, timeout } => health(&url, std::time::Duration::from_secs(timeout)),
    }
}

fn health(url: &str, timeout: std::time::Duration) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("opgate: {e}");
            return ExitCode::FAILURE;
        }
    };
    let answer = runtime.block_on(async {
        let client = opgate::outbound::client(&[], timeout).map_err(|e| e.to_string())?;
        let uri: http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
        let request = http::Request::get(uri)
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .map_err(|e| e.to_string())?;
        match tokio::time::timeout(timeout, client.request(request)).await {
            Ok(Ok(r)) => Ok(r.status()),
            Ok(Err(e)) => Err(opgate::outbound::error_chain(&e)),
            Err(_) => Err(format!("no answer within {timeout:?}")),
        }
    });
    match answer {
        Ok(status) if status.is_success() => {
            println!("ok");
            ExitCode::SUCCESS
        }
        Ok(status) => {
            eprintln!("opgate: {url} answered {status}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("opgate: {e}");
            ExitCode::FAILURE
        }
    }
}

fn decode(file: &std::path::Path, entry_point: Option<alloy_primitives::Address>, chain_id: Option<u64>) -> ExitCode {
    let text = if file.as_os_str() == "-" {
        let mut s = String::new();
        match std::io::Read::read_to_string(&mut std::io::stdin(), &mut s) {
            Ok(_) => s,
            Err(e) => {
                eprintln!("opgate: cannot read standard input: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        match std::fs::read_to_string(file) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("opgate: cannot read {}: {e}", file.display());
                return ExitCode::FAILURE;
            }
        }
    };
    match opgate::explain::decode_text(&text, entry_point, chain_id) {
        Ok(decoded) => match serde_json::to_string_pretty(&decoded) {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("opgate: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("opgate: not a UserOperation: {e}");
            ExitCode::from(2)
        }
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let overrides = Overrides {
        listen: args.listen,
        metrics_listen: args.metrics_listen,
        upstreams: args.upstreams,
        chain_id: args.chain_id,
        log_format: args.log_format,
        node: args.node,
        tls_ca_file: args.tls_ca_file,
    };
    let config = match &args.config {
        Some(path) => Config::load(path, &overrides),
        None => Config::from_overrides(&overrides),
    };
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("opgate: {e}");
            return ExitCode::from(2);
        }
    };
    opgate::telemetry::init_tracing(config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("opgate: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let listen = config.server.listen;
        let metrics_listen = config.server.metrics_listen;
        let listener = match tokio::net::TcpListener::bind(listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("opgate: cannot listen on {listen}: {e}");
                return ExitCode::FAILURE;
            }
        };
        let metrics_listener = match tokio::net::TcpListener::bind(metrics_listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("opgate: cannot listen on {metrics_listen} for metrics: {e}");
                return ExitCode::FAILURE;
            }
        };
        let admin_listener = match config.admin.listen {
            Some(addr) => match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => Some(l),
                Err(e) => {
                    eprintln!("opgate: cannot listen on {addr} for the admin API: {e}");
                    return ExitCode::FAILURE;
                }
            },
            None => None,
        };
        let mut app = match App::build(config).await {
            Ok(app) => app,
            Err(e) => {
                eprintln!("opgate: {e}");
                return ExitCode::FAILURE;
            }
        };
        if let Some(l) = admin_listener {
            app = app.with_admin(l, args.config.clone());
        }
        match app.run(listener, Some(metrics_listener), shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("opgate: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received");
}
