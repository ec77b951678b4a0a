//! The end-to-end tests: the real `rollcall` binary (and the example SDK
//! service) started as a user would start them. One test binary, one module
//! per area, sharing `common`: linked once instead of once per file.

mod common;

mod access;
mod browser_dashboard;
mod browser_logs;
mod browser_portal;
mod browsers;
mod callbacks;
mod chaos;
mod classic_protocol;
mod cli;
mod cluster;
mod dashboard;
mod docs;
mod durability;
mod ecosystem;
mod failover;
mod full_disk;
mod grading;
mod health;
mod hostile;
mod limits;
mod logging;
mod notification;
mod signing;
mod tls;
mod up;
