//! The registry's settings: every flag also reads a `ROLLCALL_...` environment
//! variable. Tests build [`RegistryConfig`] directly (see
//! [`RegistryConfig::for_tests`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::catalog::CatalogConfig;
use crate::catalog::delivery::DeliveryPolicy;
use crate::catalog::health::HealthPolicy;
use crate::store::sqlite::Sync;

pub use rollcall_proto::units::parse_duration;

/// `rollcall registry` settings.
#[derive(Debug, Clone, clap::Args)]
pub struct RegistryConfig {
    /// Address to listen on.
    #[arg(long, env = "ROLLCALL_REGISTRY_ADDR", default_value = "127.0.0.1:3000")]
    pub addr: SocketAddr,

    #[command(flatten)]
    pub access: rollcall_http::access::AccessArgs,

    #[command(flatten)]
    pub serving: rollcall_http::server::ServeArgs,

    /// Answer DNS queries (UDP and TCP) on this address:
    /// `NAME.service.rollcall` A/AAAA and SRV, instances in discovery only.
    /// Port 0 picks one free for both; `answering DNS on ADDR` on stdout says
    /// which.
    #[arg(long, env = "ROLLCALL_DNS_ADDR")]
    pub dns_addr: Option<SocketAddr>,

    /// TTL of DNS answers, in seconds (0: resolvers ask again every time,
    /// so an instance out of discovery is gone from the next answer).
    #[arg(long, env = "ROLLCALL_DNS_TTL", default_value_t = 0)]
    pub dns_ttl: u32,

    /// Most instances in the catalog; a registration of a new URL past it is
    /// refused (503 `catalog_full`), re-registrations still pass.
    #[arg(long, env = "ROLLCALL_MAX_INSTANCES", default_value_t = 10_000)]
    pub max_instances: usize,

    /// Most watch streams open at once; more are refused (503
    /// `too_many_streams`).
    #[arg(long, env = "ROLLCALL_MAX_WATCH_STREAMS", default_value_t = 4_000)]
    pub max_watch_streams: usize,

    /// Writes (registrations, deregistrations, maintenance) per second from
    /// one client address, with a burst of twice that; more are a 429 with
    /// `Retry-After`. 0: no limit.
    #[arg(long, env = "ROLLCALL_MAX_WRITES_PER_CLIENT", default_value_t = 1_000)]
    pub max_writes_per_client: u32,

    /// Addresses (CIDR list) a registration may name besides its own, or
    /// `any`: by default every URL in a registration must point at the
    /// address it comes from (`localhost` counts from loopback); a request
    /// with the token may name anything.
    #[arg(long, env = "ROLLCALL_ALLOW_CALLBACKS", value_delimiter = ',', value_parser = crate::callbacks::CallbackRange::parse)]
    pub allow_callbacks: Vec<crate::callbacks::CallbackRange>,

    /// Sign every patch and heartbeat request (HMAC-SHA256 over a timestamp
    /// and the body); SDK services holding the same key refuse unsigned,
    /// forged, stale or replayed ones. At least 16 characters.
    #[arg(long, env = "ROLLCALL_SIGNING_KEY", hide_env_values = true, value_parser = rollcall_http::signing::SigningKey::parse)]
    pub signing_key: Option<rollcall_http::signing::SigningKey>,

    /// Keep the catalog in etcd (`http://HOST:PORT`, comma-separated
    /// members) instead of a file: cluster mode. A write is answered once
    /// etcd has committed it.
    #[arg(
        long,
        env = "ROLLCALL_ETCD",
        value_delimiter = ',',
        conflicts_with = "in_memory"
    )]
    pub etcd: Vec<rollcall_proto::ServiceUrl>,

    /// Where under etcd's keyspace the catalog lives.
    #[arg(long, env = "ROLLCALL_ETCD_PREFIX", default_value = "/rollcall/")]
    pub etcd_prefix: String,

    /// How long one etcd member may take to answer before the next is tried.
    #[arg(long, env = "ROLLCALL_ETCD_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub etcd_timeout: Duration,

    /// A replica's etcd lease: a replica that stops renewing it (killed,
    /// frozen, cut off) has its share of checks and deliveries taken over
    /// by the others this long after.
    #[arg(long, env = "ROLLCALL_LEASE_TTL", default_value = "3s", value_parser = parse_duration)]
    pub lease_ttl: Duration,

    /// Directory for the catalog file (`registry.db`).
    #[arg(long, env = "ROLLCALL_DATA_DIR", default_value_os_t = rollcall_proto::paths::default_data_dir())]
    pub data_dir: PathBuf,

    /// Keep the catalog in memory only: nothing is written to disk, and a
    /// restart starts empty.
    #[arg(long, env = "ROLLCALL_IN_MEMORY")]
    pub in_memory: bool,

    /// SQLite durability: `normal` survives a killed registry; `full` also
    /// survives a power loss (an fsync per commit).
    #[arg(long, env = "ROLLCALL_SYNC", value_enum, default_value_t = Sync::Normal)]
    pub sync: Sync,

    /// Time between health checks of one instance (jittered ±10 %).
    #[arg(long, env = "ROLLCALL_CHECK_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub check_interval: Duration,

    /// How long one health check may take before it counts as failed.
    #[arg(long, env = "ROLLCALL_CHECK_TIMEOUT", default_value = "500ms", value_parser = parse_duration)]
    pub check_timeout: Duration,

    /// Time to the next check while an instance's status is in doubt (after a
    /// failure, or a pass while critical).
    #[arg(long, env = "ROLLCALL_FAST_RECHECK", default_value = "250ms", value_parser = parse_duration)]
    pub fast_recheck: Duration,

    /// Consecutive failed checks that take an instance out of discovery.
    #[arg(long, env = "ROLLCALL_FAILURES_TO_CRITICAL", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub failures_to_critical: u32,

    /// Consecutive passed checks that put a critical instance back.
    #[arg(long, env = "ROLLCALL_PASSES_TO_RECOVER", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub passes_to_recover: u32,

    /// Remove an instance that has been critical for this long.
    #[arg(long, env = "ROLLCALL_DEREGISTER_AFTER", default_value = "10m", value_parser = parse_duration)]
    pub deregister_after: Duration,

    /// Most keep-alive connections to instances the checker holds open
    /// between checks (a held connection that closes gets its instance
    /// checked at once; 0 holds none; instances past it are checked through
    /// pooled connections). Never more than a quarter of the
    /// file-descriptor limit.
    #[arg(long, env = "ROLLCALL_MAX_HELD_CONNECTIONS", default_value_t = 1024)]
    pub max_held_connections: usize,

    /// Most health checks in flight at once.
    #[arg(long, env = "ROLLCALL_MAX_CHECKS_IN_FLIGHT", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_checks_in_flight: u32,

    /// How long one patch delivery attempt may take.
    #[arg(long, env = "ROLLCALL_DELIVERY_TIMEOUT", default_value = "1s", value_parser = parse_duration)]
    pub delivery_timeout: Duration,

    /// Attempts per patch before the receiver is marked as owed a resync.
    #[arg(long, env = "ROLLCALL_DELIVERY_ATTEMPTS", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    pub delivery_attempts: u32,

    /// Most patches waiting per receiver; past it, the waiting patches are
    /// merged into one with the same net effect.
    #[arg(long, env = "ROLLCALL_QUEUE_LIMIT", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub queue_limit: u32,

    /// The log service's name: the registry ships its own logs to it (found in
    /// its own catalog) and the dashboard shows its newest records.
    #[arg(long, env = "ROLLCALL_LOG_SERVICE", default_value = rollcall_proto::names::well_known::LOG_SERVICE)]
    pub log_service: rollcall_proto::ServiceName,
}

impl RegistryConfig {
    /// The defaults, in memory, on an ephemeral port: what most tests want.
    pub fn for_tests() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            access: rollcall_http::access::AccessArgs::default(),
            serving: rollcall_http::server::ServeArgs::default(),
            dns_addr: None,
            dns_ttl: 0,
            max_instances: 10_000,
            max_watch_streams: 4_000,
            max_writes_per_client: 1_000,
            allow_callbacks: Vec::new(),
            signing_key: None,
            etcd: Vec::new(),
            etcd_prefix: "/rollcall/".to_owned(),
            etcd_timeout: Duration::from_secs(2),
            lease_ttl: Duration::from_secs(3),
            data_dir: std::env::temp_dir().join("rollcall-unused"),
            in_memory: true,
            sync: Sync::Normal,
            check_interval: Duration::from_secs(1),
            check_timeout: Duration::from_millis(500),
            fast_recheck: Duration::from_millis(250),
            failures_to_critical: 2,
            passes_to_recover: 2,
            deregister_after: Duration::from_secs(600),
            max_checks_in_flight: 1024,
            max_held_connections: 1024,
            delivery_timeout: Duration::from_secs(1),
            delivery_attempts: 4,
            queue_limit: 64,
            log_service: rollcall_proto::ServiceName::parse(
                rollcall_proto::names::well_known::LOG_SERVICE,
            )
            .unwrap_or_else(|_| unreachable!("a valid name")),
        }
    }

    /// The rules the catalog applies.
    pub fn catalog(&self) -> CatalogConfig {
        CatalogConfig {
            health: HealthPolicy {
                interval: self.check_interval,
                fast_recheck: self.fast_recheck,
                failures_to_critical: self.failures_to_critical,
                passes_to_recover: self.passes_to_recover,
            },
            delivery: DeliveryPolicy {
                queue_limit: self.queue_limit as usize,
                ..DeliveryPolicy::default()
            },
            deregister_after: self.deregister_after,
        }
    }
}
