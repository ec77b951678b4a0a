//! `rollcall grades` settings; every flag also reads a `ROLLCALL_...` variable.

use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, clap::Args)]
pub struct GradesConfig {
    /// Address to listen on.
    #[arg(long, env = "ROLLCALL_GRADES_ADDR", default_value = "127.0.0.1:6100")]
    pub addr: SocketAddr,

    #[command(flatten)]
    pub membership: rollcall_sdk::args::Membership,

    /// The service name to register under.
    #[arg(long, env = "ROLLCALL_GRADES_NAME", default_value = rollcall_proto::names::well_known::GRADING_SERVICE)]
    pub name: rollcall_proto::ServiceName,

    /// The log service's name, required so logs can be forwarded to it.
    #[arg(long, env = "ROLLCALL_LOG_SERVICE_NAME", default_value = rollcall_proto::names::well_known::LOG_SERVICE)]
    pub log_service: rollcall_proto::ServiceName,

    /// Data directory; the grade book is `grades.db` in it. Instances given
    /// the same directory share one grade book.
    #[arg(long, env = "ROLLCALL_DATA_DIR", default_value_os_t = rollcall_proto::paths::default_data_dir())]
    pub data_dir: PathBuf,

    /// Start a new grade book empty instead of with the demo students.
    #[arg(long, env = "ROLLCALL_NO_DEMO_DATA")]
    pub no_demo_data: bool,
}

impl GradesConfig {
    /// Standalone, on a free port, in `data_dir`.
    pub fn for_tests(data_dir: PathBuf) -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            membership: rollcall_sdk::args::Membership::standalone(),
            name: rollcall_proto::ServiceName::well_known(
                rollcall_proto::names::well_known::GRADING_SERVICE,
            ),
            log_service: rollcall_proto::ServiceName::well_known(
                rollcall_proto::names::well_known::LOG_SERVICE,
            ),
            data_dir,
            no_demo_data: false,
        }
    }
}
