//! `rollcall portal` settings; every flag also reads a `ROLLCALL_...` variable.

use std::net::SocketAddr;

#[derive(Debug, Clone, clap::Args)]
pub struct PortalConfig {
    /// Address to listen on.
    #[arg(long, env = "ROLLCALL_PORTAL_ADDR", default_value = "127.0.0.1:5000")]
    pub addr: SocketAddr,

    #[command(flatten)]
    pub membership: rollcall_sdk::args::Membership,

    /// The service name to register under.
    #[arg(long, env = "ROLLCALL_PORTAL_NAME", default_value = rollcall_proto::names::well_known::PORTAL)]
    pub name: rollcall_proto::ServiceName,

    /// The grading service's name in the registry.
    #[arg(long, env = "ROLLCALL_GRADES_NAME", default_value = rollcall_proto::names::well_known::GRADING_SERVICE)]
    pub grading_service: rollcall_proto::ServiceName,

    /// The log service's name, required so logs can be forwarded to it.
    #[arg(long, env = "ROLLCALL_LOG_SERVICE_NAME", default_value = rollcall_proto::names::well_known::LOG_SERVICE)]
    pub log_service: rollcall_proto::ServiceName,
}
