//! `rollcall log` settings; every flag also reads a `ROLLCALL_...` variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use rollcall_proto::units::{parse_duration, parse_size};

use crate::store::{FsyncPolicy, StoreConfig};

#[derive(Debug, Clone, clap::Args)]
pub struct LogConfig {
    /// Address to listen on.
    #[arg(long, env = "ROLLCALL_LOG_ADDR", default_value = "127.0.0.1:4000")]
    pub addr: SocketAddr,

    #[command(flatten)]
    pub membership: rollcall_sdk::args::Membership,

    #[command(flatten)]
    pub access: rollcall_http::access::AccessArgs,

    /// Writes (`POST /log`, batches) per second from one client address,
    /// with a burst of twice that; more are a 429 with `Retry-After`. 0: no
    /// limit. (An SDK service sends a batch at a time; a classic one a line
    /// per request.)
    #[arg(
        long,
        env = "ROLLCALL_LOG_MAX_WRITES_PER_CLIENT",
        default_value_t = 5_000
    )]
    pub max_writes_per_client: u32,

    /// The service name to register under.
    #[arg(long, env = "ROLLCALL_LOG_NAME", default_value = rollcall_proto::names::well_known::LOG_SERVICE)]
    pub name: rollcall_proto::ServiceName,

    /// Data directory; segments go in its `logs/` folder.
    #[arg(long, env = "ROLLCALL_DATA_DIR", default_value_os_t = rollcall_proto::paths::default_data_dir())]
    pub data_dir: PathBuf,

    /// When acknowledged records reach the disk: `always` (fsync before
    /// answering), `interval` (fsync every --fsync-interval), `never`.
    #[arg(long, env = "ROLLCALL_LOG_FSYNC", value_enum, default_value_t = FsyncPolicy::Interval)]
    pub fsync: FsyncPolicy,

    /// The fsync period of `--fsync interval`.
    #[arg(long, env = "ROLLCALL_LOG_FSYNC_INTERVAL", default_value = "100ms", value_parser = parse_duration)]
    pub fsync_interval: Duration,

    /// Start a new segment file past this size.
    #[arg(long, env = "ROLLCALL_LOG_SEGMENT_SIZE", default_value = "64MiB", value_parser = parse_size)]
    pub segment_size: u64,

    /// Delete the oldest segments while all of them take more than this.
    #[arg(long, env = "ROLLCALL_LOG_RETENTION_SIZE", default_value = "1GiB", value_parser = parse_size)]
    pub retention_size: u64,

    /// Delete segments whose newest record arrived longer ago than this.
    #[arg(long, env = "ROLLCALL_LOG_RETENTION_AGE", default_value = "7d", value_parser = parse_duration)]
    pub retention_age: Duration,

    /// Largest `POST /v1/logs` body.
    #[arg(long, env = "ROLLCALL_LOG_MAX_BATCH_BYTES", default_value = "8MiB", value_parser = parse_size)]
    pub max_batch_bytes: u64,

    /// Most records in one batch.
    #[arg(long, env = "ROLLCALL_LOG_MAX_BATCH_RECORDS", default_value_t = 10_000)]
    pub max_batch_records: usize,

    /// Largest single record (message, fields and all).
    #[arg(long, env = "ROLLCALL_LOG_MAX_RECORD_BYTES", default_value = "64KiB", value_parser = parse_size)]
    pub max_record_bytes: u64,

    /// Most stored bytes one page of a query reads: a search that has not
    /// filled its page by then answers what it found with a `next_cursor`
    /// to go on from (the CLI and the explorer go on by themselves).
    #[arg(long, env = "ROLLCALL_LOG_SCAN_BUDGET", default_value = "256MiB", value_parser = parse_size)]
    pub scan_budget: u64,
}

impl LogConfig {
    /// Standalone, on a free port, in `data_dir`: what tests want.
    pub fn for_tests(data_dir: PathBuf) -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            membership: rollcall_sdk::args::Membership::standalone(),
            access: rollcall_http::access::AccessArgs::default(),
            max_writes_per_client: 5_000,
            name: rollcall_proto::ServiceName::well_known(
                rollcall_proto::names::well_known::LOG_SERVICE,
            ),
            data_dir,
            fsync: FsyncPolicy::Interval,
            fsync_interval: Duration::from_millis(100),
            segment_size: 64 << 20,
            retention_size: 1 << 30,
            retention_age: Duration::from_secs(7 * 86_400),
            max_batch_bytes: 8 << 20,
            max_batch_records: 10_000,
            max_record_bytes: 64 << 10,
            scan_budget: crate::query::DEFAULT_SCAN_BUDGET,
        }
    }

    pub fn store(&self) -> StoreConfig {
        StoreConfig {
            dir: self.data_dir.join("logs"),
            fsync: self.fsync,
            fsync_interval: self.fsync_interval,
            segment_size: self.segment_size,
            retention_size: self.retention_size,
            retention_age: self.retention_age,
            dedupe_window: 100_000,
        }
    }
}
