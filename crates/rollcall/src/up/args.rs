//! What `rollcall up` is told: where each service listens, its data, and
//! what it hands every child (TLS) or the registry alone (etcd).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use rollcall_proto::units::parse_duration;

#[derive(Debug, Clone, clap::Args)]
pub struct UpArgs {
    /// Data directory shared by all services (registry.db, logs/, grades.db).
    #[arg(long, env = "ROLLCALL_DATA_DIR", default_value_os_t = rollcall_proto::paths::default_data_dir())]
    pub data_dir: PathBuf,
    /// The registry's address.
    #[arg(long, env = "ROLLCALL_REGISTRY_ADDR", default_value = "127.0.0.1:3000")]
    pub registry_addr: SocketAddr,
    /// The log service's address.
    #[arg(long, env = "ROLLCALL_LOG_ADDR", default_value = "127.0.0.1:4000")]
    pub log_addr: SocketAddr,
    /// The grading service's address.
    #[arg(long, env = "ROLLCALL_GRADES_ADDR", default_value = "127.0.0.1:6100")]
    pub grades_addr: SocketAddr,
    /// The portal's address.
    #[arg(long, env = "ROLLCALL_PORTAL_ADDR", default_value = "127.0.0.1:5000")]
    pub portal_addr: SocketAddr,
    /// Report a crashed child but do not restart it.
    #[arg(long, env = "ROLLCALL_NO_RESTART")]
    pub no_restart: bool,
    /// The most stopping everything may take before the rest is killed.
    #[arg(long, env = "ROLLCALL_STOP_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub stop_timeout: Duration,
    /// Every service serves HTTPS with this certificate and key, and every
    /// call between them verifies against --ca-file.
    #[command(flatten)]
    pub tls: rollcall_http::tls::TlsArgs,
    /// Run the registry as a replica over this etcd cluster (members
    /// comma-separated) instead of a file: start more replicas with
    /// `rollcall registry --etcd` to share its work.
    #[arg(long, env = "ROLLCALL_ETCD", value_delimiter = ',')]
    pub etcd: Vec<rollcall_proto::ServiceUrl>,
    /// The registry also answers DNS (UDP and TCP) here:
    /// `NAME.service.rollcall` A/AAAA and SRV (port 0: any free one).
    #[arg(long, env = "ROLLCALL_DNS_ADDR")]
    pub dns_addr: Option<SocketAddr>,
}

/// The registry's `--dns-addr` flag, when asked for.
pub(super) fn dns_flags(addr: Option<SocketAddr>) -> Vec<String> {
    addr.map(|a| vec!["--dns-addr".to_owned(), a.to_string()])
        .unwrap_or_default()
}

/// The registry's `--etcd` flag, when there are members to give it.
pub(super) fn etcd_flags(members: &[rollcall_proto::ServiceUrl]) -> Vec<String> {
    if members.is_empty() {
        return Vec::new();
    }
    let members: Vec<&str> = members
        .iter()
        .map(rollcall_proto::ServiceUrl::as_str)
        .collect();
    vec!["--etcd".to_owned(), members.join(",")]
}

impl UpArgs {
    /// The TLS flags every child gets.
    pub(super) fn tls_flags(&self) -> Vec<String> {
        let tls = &self.tls;
        [
            ("--tls-cert", &tls.tls_cert),
            ("--tls-key", &tls.tls_key),
            ("--ca-file", &tls.trust.ca_file),
        ]
        .into_iter()
        .filter_map(|(flag, path)| {
            path.as_ref()
                .map(|p| [flag.to_owned(), p.to_string_lossy().into_owned()])
        })
        .flatten()
        .collect()
    }
}
