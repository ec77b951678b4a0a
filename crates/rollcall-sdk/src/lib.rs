//! The rollcall SDK: what a Rust service embeds to be a well-behaved member of
//! the system.
//!
//! ```no_run
//! # async fn demo() -> Result<(), rollcall_sdk::SdkError> {
//! use axum::{Router, routing::get};
//! use rollcall_sdk::Service;
//!
//! let service = Service::builder("Greeter")
//!     .registry("http://127.0.0.1:3000")
//!     .requires(["LogService"])
//!     .router(Router::new().route("/", get(|| async { "hello" })))
//!     .start()
//!     .await?;
//! let log = rollcall_proto::ServiceName::parse("LogService").expect("valid name");
//! if let Some(url) = service.pick(&log) {
//!     println!("the log service is at {url}");
//! }
//! service.wait().await; // until Ctrl-C / SIGTERM: deregisters, drains, exits
//! # Ok(()) }
//! ```
//!
//! - [`Service`] / [`ServiceBuilder`]: serving, registration (with retry and
//!   re-registration), the heartbeat and patch endpoints, graceful shutdown.
//! - [`Providers`]: the table of providers kept current by the registry's
//!   patches, with round-robin [`Providers::pick`] that skips failing ones.
//! - [`logs`]: a `tracing` layer that forwards the service's records to the
//!   log service found through the registry.
//! - [`SdkError`]: every error says whether retrying may help.

pub mod args;
/// Reading another service's answer within a size (in `rollcall-http`, where
/// every service and the etcd client find it).
pub use rollcall_http::bounded;
pub mod error;
pub mod logs;
pub mod providers;
pub mod service;

pub use error::{RunError, SdkError};
pub use providers::Providers;
pub use rollcall_proto::{ServiceName, ServiceUrl};
pub use service::{Service, ServiceBuilder};
