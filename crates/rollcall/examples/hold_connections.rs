//! Checks a deployment's connection limits the way an attacker would: opens
//! many idle TCP connections to a service and holds them, sending nothing.
//!
//! ```text
//! cargo run --release --example hold_connections -- --to 127.0.0.1:3000 --count 10000 \
//!     --from 127.0.0.2,127.0.0.3
//! ```
//!
//! Connections go out from the `--from` addresses in turn (on loopback, any
//! of 127.0.0.0/8 works), at most 256 being opened at once. It prints
//! `opened N of COUNT` once done, then holds them until stdin closes or it
//! is killed. It raises its own open-file limit to the hard limit first.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use clap::Parser;
use tokio::io::AsyncReadExt as _;

#[derive(Debug, Parser)]
struct Args {
    /// The service's address.
    #[arg(long)]
    to: SocketAddr,
    /// How many connections to open.
    #[arg(long)]
    count: usize,
    /// Source addresses, used in turn.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1")]
    from: Vec<IpAddr>,
}

async fn connect(from: IpAddr, to: SocketAddr) -> Option<tokio::net::TcpStream> {
    let socket = match from {
        IpAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        IpAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    }
    .ok()?;
    socket.bind(SocketAddr::new(from, 0)).ok()?;
    tokio::time::timeout(Duration::from_secs(5), socket.connect(to))
        .await
        .ok()?
        .ok()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    use futures_util::StreamExt as _;
    let args = Args::parse();
    let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)?;
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard)?;
    let sources = args.from.clone();
    let held: Vec<tokio::net::TcpStream> = futures_util::stream::iter(0..args.count)
        .map(|i| connect(sources[i % sources.len()], args.to))
        .buffer_unordered(256)
        .filter_map(|c| async move { c })
        .collect()
        .await;
    println!("opened {} of {}", held.len(), args.count);
    // Hold them until told to stop (stdin closes when the caller goes).
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    while !matches!(stdin.read(&mut buf).await, Ok(0) | Err(_)) {}
    drop(held);
    Ok(())
}
