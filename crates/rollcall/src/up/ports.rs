//! Before `up` starts anything: every port it was told to use is free, or
//! it says which is taken and the flag that changes it.

use std::net::SocketAddr;

use anyhow::{Context as _, bail};

use super::Spec;

/// A service's port must be free (port 0: any is).
pub(super) fn check_port(spec: &Spec) -> anyhow::Result<()> {
    if spec.addr.port() == 0 {
        return Ok(());
    }
    match std::net::TcpListener::bind(spec.addr) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => bail!(
            "port {} ({}) is already in use on {}: stop what is using it, or choose another with {}",
            spec.addr.port(),
            spec.name,
            spec.addr.ip(),
            spec.flag
        ),
        Err(e) => {
            Err(e).with_context(|| format!("cannot listen on {} for {}", spec.addr, spec.name))
        }
    }
}

/// The registry's DNS port must be free for UDP and TCP alike.
pub(super) fn check_dns_port(addr: SocketAddr) -> anyhow::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    let udp = std::net::UdpSocket::bind(addr).map(drop);
    let tcp = std::net::TcpListener::bind(addr).map(drop);
    match udp.and(tcp) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => bail!(
            "port {} (registry DNS) is already in use on {}: stop what is using it, or choose another with --dns-addr",
            addr.port(),
            addr.ip()
        ),
        Err(e) => Err(e).with_context(|| format!("cannot answer DNS on {addr}")),
    }
}
