//! Running the services: bind with a clear message when the port is taken,
//! announce the address, run until Ctrl-C or SIGTERM.

use std::net::SocketAddr;

use anyhow::Context as _;
use rollcall_grades::GradesConfig;
use rollcall_logs::LogConfig;
use rollcall_portal::PortalConfig;
use rollcall_registry::RegistryConfig;
use rollcall_sdk::logs::LogForwarder;
use tokio::net::TcpListener;

/// Binds `addr`, explaining a taken port in terms of the flag that sets it.
pub async fn bind(addr: SocketAddr, flag: &str, env: &str) -> anyhow::Result<TcpListener> {
    match TcpListener::bind(addr).await {
        Ok(listener) => Ok(listener),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => anyhow::bail!(
            "port {} is already in use on {}: stop what is using it, or choose another address with {flag} (or {env})",
            addr.port(),
            addr.ip()
        ),
        Err(e) => Err(e).with_context(|| format!("cannot listen on {addr}")),
    }
}

/// The token that stops a service: Ctrl-C or SIGTERM, and — for a child of
/// `rollcall up` — its stdin closing, which happens when `up` dies however it
/// dies, so no service outlives it.
pub fn shutdown_token() -> tokio_util::sync::CancellationToken {
    let token = rollcall_http::shutdown_on_signals();
    if std::env::var_os(crate::up::EXIT_WITH_PARENT).is_some() {
        let trigger = token.clone();
        tokio::spawn(async move {
            use tokio::io::AsyncReadExt as _;
            let mut stdin = tokio::io::stdin();
            let mut buf = [0u8; 64];
            loop {
                match stdin.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            tracing::info!("the parent process is gone: shutting down");
            trigger.cancel();
        });
    }
    token
}

/// Reads the TLS files once before anything starts: a certificate, key or
/// CA file that cannot be used stops the service before it claims to listen.
fn check_tls(tls: &rollcall_http::tls::TlsArgs) -> anyhow::Result<()> {
    tls.acceptor()?;
    tls.client(reqwest::Client::builder())?
        .build()
        .context("cannot build an HTTP client")?;
    Ok(())
}

/// Prints the one line that says the service is ready (`scheme` is `http`
/// or `https`).
pub fn announce(listener: &TcpListener, scheme: &str) -> anyhow::Result<SocketAddr> {
    let addr = listener.local_addr().context("no local address")?;
    crate::cli::sayln!("listening on {scheme}://{addr}");
    Ok(addr)
}

/// What prints that line once the service is really ready (its store open):
/// a service that cannot start never claims to be listening.
fn announcer(
    listener: &TcpListener,
    scheme: &'static str,
) -> anyhow::Result<impl FnOnce() + use<>> {
    let addr = listener.local_addr().context("no local address")?;
    Ok(move || crate::cli::sayln!("listening on {scheme}://{addr}"))
}

/// `rollcall registry`.
pub async fn registry(
    config: RegistryConfig,
    forwarder: Option<LogForwarder>,
) -> anyhow::Result<()> {
    check_tls(&config.serving.tls)?;
    let listener = bind(config.addr, "--addr", "ROLLCALL_REGISTRY_ADDR").await?;
    let ready = announcer(&listener, config.serving.tls.scheme())?;
    if config.in_memory {
        tracing::info!("in memory: the catalog is not kept on disk");
    }
    let shutdown = shutdown_token();
    let mut shipping = None;
    let run = rollcall_registry::run(config, listener, shutdown.clone(), |started| {
        if let Some(forwarder) = &forwarder {
            shipping = Some(crate::own_logs::start(
                &started.registry,
                forwarder,
                started.url,
                shutdown,
            ));
        }
        // Before the ready line, so whoever waits for that has both (with
        // `--dns-addr HOST:0` this is the only way to learn the port).
        if let Some(dns) = started.dns_addr {
            crate::cli::sayln!("answering DNS on {dns}");
        }
        ready();
    })
    .await;
    // The registry cancelled `shutdown` on its way out, whatever ended it:
    // the shipper flushes what it holds (within own_logs::FLUSH).
    if let Some(shipping) = shipping {
        let _ = shipping.await;
    }
    run?;
    Ok(())
}

/// `rollcall log`.
pub async fn log(config: LogConfig, forwarder: Option<LogForwarder>) -> anyhow::Result<()> {
    check_tls(&config.membership.serving.tls)?;
    let listener = bind(config.addr, "--addr", "ROLLCALL_LOG_ADDR").await?;
    let ready = announcer(&listener, config.membership.serving.tls.scheme())?;
    let shutdown = shutdown_token();
    rollcall_logs::run(config, listener, shutdown, forwarder, ready).await?;
    Ok(())
}

/// `rollcall grades`.
pub async fn grades(config: GradesConfig, forwarder: Option<LogForwarder>) -> anyhow::Result<()> {
    check_tls(&config.membership.serving.tls)?;
    let listener = bind(config.addr, "--addr", "ROLLCALL_GRADES_ADDR").await?;
    let ready = announcer(&listener, config.membership.serving.tls.scheme())?;
    let shutdown = shutdown_token();
    rollcall_grades::run(config, listener, shutdown, forwarder, ready).await?;
    Ok(())
}

/// `rollcall portal`.
pub async fn portal(config: PortalConfig, forwarder: Option<LogForwarder>) -> anyhow::Result<()> {
    check_tls(&config.membership.serving.tls)?;
    let listener = bind(config.addr, "--addr", "ROLLCALL_PORTAL_ADDR").await?;
    announce(&listener, config.membership.serving.tls.scheme())?;
    let shutdown = shutdown_token();
    rollcall_portal::run(config, listener, shutdown, forwarder).await?;
    Ok(())
}
