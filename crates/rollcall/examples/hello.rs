//! The smallest rollcall service, showing the whole SDK API.
//!
//! ```text
//! cargo run --example hello -- --name Hello --requires LogService
//! curl localhost:PORT/            # who am I, and who provides what I require
//! ```
//!
//! It serves its own router, registers with the registry once it listens,
//! learns its providers from the registry's patches, and on Ctrl-C or SIGTERM
//! deregisters and drains before exiting.

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use clap::Parser;
use rollcall_sdk::{Service, ServiceName};

#[derive(Debug, Parser)]
struct Args {
    /// The service name to register under.
    #[arg(long, default_value = "Hello")]
    name: String,
    /// The registry's URL.
    #[arg(
        long,
        env = "ROLLCALL_REGISTRY",
        default_value = "http://127.0.0.1:3000"
    )]
    registry: String,
    /// Address to listen on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    addr: std::net::SocketAddr,
    /// Names of services this one requires: `--requires A,B` or the flag
    /// repeated.
    #[arg(long, value_delimiter = ',')]
    requires: Vec<String>,
    /// A metadata pair to register with: `--meta version=2`, repeatable.
    #[arg(long, value_name = "KEY=VALUE")]
    meta: Vec<String>,
    /// Behave like a classic client: no watch stream to the registry, so a
    /// crash is noticed by health checks only.
    #[arg(long)]
    classic: bool,
    /// Forward this service's logs to the LogService the registry announces.
    #[arg(long)]
    forward_logs: bool,
    /// Emit a numbered log line this often (`10ms`, `1s`).
    #[arg(long, value_parser = rollcall_proto::units::parse_duration)]
    log_every: Option<Duration>,
    /// Stop emitting after this many lines.
    #[arg(long, default_value_t = u64::MAX)]
    log_count: u64,
    /// Size of the log forwarding buffer, in records.
    #[arg(long, default_value_t = rollcall_sdk::logs::DEFAULT_BUFFER)]
    log_buffer: usize,
}

/// Says who this is, who provides what it requires, and whether each of those
/// answers: `pick` chooses a provider (round-robin, skipping ones reported
/// failing), `client` calls it with a timeout, `report_failure` steers the
/// next `pick` elsewhere.
async fn hello(State(service): State<Service>) -> String {
    let mut text = format!("hello from {} at {}\n", service.name(), service.url());
    for (name, urls) in service.providers().snapshot() {
        let urls: Vec<String> = urls.iter().map(ToString::to_string).collect();
        text.push_str(&format!("{name}: {}\n", urls.join(", ")));
        let Some(url) = service.pick(&name) else {
            continue;
        };
        let answer = service
            .client()
            .get(url.join("/healthz"))
            .timeout(Duration::from_secs(1))
            .send()
            .await;
        match answer {
            Ok(r) if r.status().is_success() => text.push_str(&format!("  {url} answers\n")),
            _ => {
                service.report_failure(&name, &url);
                text.push_str(&format!("  {url} did not answer; skipped for a while\n"));
            }
        }
    }
    text
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    use tracing_subscriber::prelude::*;
    let args = Args::parse();
    // Logs go to stderr and, with --forward-logs, to the log service too.
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(
            tracing_subscriber::EnvFilter::try_from_env("ROLLCALL_LOG")
                .unwrap_or_else(|_| "info".into()),
        );
    let (forward, forwarder) = rollcall_sdk::logs::layer_with_buffer(&args.name, args.log_buffer);
    tracing_subscriber::registry()
        .with(stderr)
        .with(
            args.forward_logs
                .then_some(forward.with_filter(tracing_subscriber::filter::LevelFilter::INFO)),
        )
        .init();

    let mut requires = args.requires.clone();
    let log_service = rollcall_proto::names::well_known::LOG_SERVICE;
    if args.forward_logs && !requires.iter().any(|r| r == log_service) {
        requires.push(log_service.to_owned());
    }
    let mut builder = Service::builder(&args.name);
    for pair in &args.meta {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--meta {pair}: expected KEY=VALUE"))?;
        builder = builder.meta(key, value);
    }
    let service = builder
        .bind(args.addr)
        .registry(&args.registry)
        .requires(requires)
        .watch_stream(!args.classic)
        // Handlers get the service handle (for its providers) as state.
        .router_with(|service| {
            Router::new()
                .route("/", get(hello))
                .with_state(service.clone())
        })
        .start()
        .await?;
    if args.forward_logs {
        forwarder.attach(&service);
    }
    println!("listening on {}", service.url());
    if let Some(every) = args.log_every {
        let stop = service.shutdown_token();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            for n in 1..=args.log_count {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = tick.tick() => tracing::info!(target: "hello", n, "tick {n}"),
                }
            }
        });
    }

    // Providers arrive by patch; show the first one of each required name.
    for name in &args.requires {
        let name = ServiceName::parse(name)?;
        match service.wait_for(&name, Duration::from_secs(2)).await {
            Ok(url) => tracing::info!(%name, %url, "provider known"),
            Err(e) => {
                tracing::info!(%name, error = %e, "no provider yet; will be told when one comes")
            }
        }
    }

    service.wait().await;
    Ok(())
}
