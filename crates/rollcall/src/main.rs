//! `rollcall`: one binary for every part of the system.
//!
//! Each subcommand runs one service (or inspects one); every flag also reads a
//! `ROLLCALL_...` environment variable. A service prints one line,
//! `listening on http://ADDR`, on stdout once it is ready; its logs go to
//! stderr.

mod cli;
mod own_logs;
mod serve;
mod up;

use clap::{Parser, Subcommand, ValueEnum};
use rollcall_grades::GradesConfig;
use rollcall_logs::LogConfig;
use rollcall_portal::PortalConfig;
use rollcall_registry::RegistryConfig;
use rollcall_sdk::logs::LogForwarder;
use tracing_subscriber::EnvFilter;

/// jemalloc instead of glibc's allocator: glibc's arenas lock when one thread
/// frees what another allocated (a request parsed on a worker, written by the
/// store thread), about a tenth of a registration's CPU, and keep freed small
/// blocks resident; jemalloc's background threads give them back.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Debug, Parser)]
#[command(
    name = "rollcall",
    version,
    about = "A small, real microservice platform: registry, logs, and an example app."
)]
struct Cli {
    /// Log filter for stderr (`info`, `debug`, `rollcall_registry=debug,info`).
    #[arg(long, global = true, env = "ROLLCALL_LOG", default_value = "info")]
    log: String,

    /// Log filter for what a service forwards to the log service (same syntax
    /// as --log).
    #[arg(
        long,
        global = true,
        env = "ROLLCALL_FORWARD_LOG",
        default_value = "info"
    )]
    forward_log: String,

    /// Log format on stderr.
    #[arg(long, global = true, env = "ROLLCALL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole system: registry, log service, grading service and portal,
    /// started in order, restarted if they crash, stopped together.
    Up(up::UpArgs),
    /// Run the registry: services register here, are health-checked, and are
    /// told where their dependencies are.
    Registry(Box<RegistryConfig>),
    /// Run the log service: collects every service's logs, answers queries
    /// and live tails. Registers as LogService.
    Log(LogConfig),
    /// Show logs from the log service (found through the registry); -f follows.
    Logs(cli::logs::LogsArgs),
    /// List registered instances and their health.
    Ls(cli::registry::LsArgs),
    /// Show the current instances, then stream changes as they happen
    /// (registered, critical, ...); reconnects across registry restarts.
    Watch(cli::watch::WatchArgs),
    /// Remove an instance from the registry by its URL. A running SDK service
    /// registers again; use `maint` to hold it out of discovery.
    Deregister(cli::registry::DeregisterArgs),
    /// Take a live instance out of discovery without removing it (`on`), or
    /// put it back (`off`).
    Maint(cli::registry::MaintArgs),
    /// Run the grading service: students and grades over REST. Registers as
    /// GradingService.
    Grades(GradesConfig),
    /// Run the teacher portal: web pages that find the grading service
    /// through the registry. Registers as Portal.
    Portal(PortalConfig),
}

/// Logs to stderr; for a service that forwards its logs (`forward_as`), also
/// into the SDK's forwarding layer, whose forwarder is returned.
fn init_tracing(
    filter: &str,
    forward_filter: &str,
    format: LogFormat,
    forward_as: Option<&str>,
) -> Option<LogForwarder> {
    use tracing_subscriber::prelude::*;
    // The DNS library logs every request at INFO: a resolver's traffic would
    // swamp stderr and the log store. The registry counts queries instead
    // (`rollcall_registry_dns_queries`); a filter that names the library
    // itself (`hickory_server=info`) still gets its lines.
    let parse = |f: &str| {
        let f = if f.contains("hickory") {
            f.to_owned()
        } else {
            format!("{f},hickory_server=warn,hickory_proto=warn,hickory_net=warn")
        };
        EnvFilter::try_new(&f).unwrap_or_else(|_| EnvFilter::new("info,hickory_server=warn"))
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let stderr = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .with_target(false)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed(),
    }
    .with_filter(parse(filter));
    let (forward, forwarder) = match forward_as {
        Some(name) => {
            let (layer, forwarder) = rollcall_sdk::logs::layer(name);
            (
                Some(layer.with_filter(parse(forward_filter))),
                Some(forwarder),
            )
        }
        None => (None, None),
    };
    tracing_subscriber::registry()
        .with(stderr)
        .with(forward)
        .init();
    forwarder
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let forward_as = match &cli.command {
        Command::Registry(_) => Some(rollcall_proto::names::well_known::REGISTRY.to_owned()),
        Command::Log(c) => Some(c.name.to_string()),
        Command::Grades(c) => Some(c.name.to_string()),
        Command::Portal(c) => Some(c.name.to_string()),
        _ => None,
    };
    // The inspecting commands say what went wrong in one line of their own
    // (a TLS failure included); the libraries' log lines would repeat it raw.
    let inspecting = matches!(
        cli.command,
        Command::Logs(_)
            | Command::Ls(_)
            | Command::Watch(_)
            | Command::Deregister(_)
            | Command::Maint(_)
    );
    let log_filter = if inspecting && !cli.log.contains("rustls") {
        format!("{},rustls=off", cli.log)
    } else {
        cli.log.clone()
    };
    let forwarder = init_tracing(
        &log_filter,
        &cli.forward_log,
        cli.log_format,
        forward_as.as_deref(),
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rollcall: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Up(args) => up::run(args).await,
            Command::Registry(config) => serve::registry(*config, forwarder).await,
            Command::Log(config) => serve::log(config, forwarder).await,
            Command::Logs(args) => cli::logs::run(args).await,
            Command::Ls(args) => cli::registry::ls(args).await,
            Command::Watch(args) => cli::watch::watch(args).await,
            Command::Deregister(args) => cli::registry::deregister(args).await,
            Command::Maint(args) => cli::registry::maint(args).await,
            Command::Grades(config) => serve::grades(config, forwarder).await,
            Command::Portal(config) => serve::portal(config, forwarder).await,
        }
    });
    // A blocking read of stdin (see `serve::shutdown_token`) never returns on
    // its own: do not wait for it.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            cli::errln!("rollcall: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
