//! `rollcall`: one binary for every part of the system.
//!
//! Each subcommand runs one service (or inspects one); every flag also reads a
//! `ROLLCALL_...` environment variable. A service prints one line,
//! `listening on http://ADDR`, on stdout once it is ready; its logs go to
//! stderr.

mod cli;
mod serve;

use clap::{Parser, Subcommand, ValueEnum};
use rollcall_logs::LogConfig;
use rollcall_registry::RegistryConfig;
use tracing_subscriber::EnvFilter;

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
    /// Run the registry: services register here, are health-checked, and are
    /// told where their dependencies are.
    Registry(RegistryConfig),
    /// Run the log service: collects every service's logs, answers queries
    /// and live tails. Registers as LogService.
    Log(LogConfig),
    /// Show logs from the log service (found through the registry); -f follows.
    Logs(cli::logs::LogsArgs),
}

fn init_tracing(filter: &str, format: LogFormat) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli.log, cli.log_format);
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
            Command::Registry(config) => serve::registry(config).await,
            Command::Log(config) => serve::log(config).await,
            Command::Logs(args) => cli::logs::run(args).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rollcall: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
