//! The benchmark's sections after the first (the ceiling, in `main.rs`), one
//! module each, all methods of `Bench`.

use super::*;

mod app;
mod checks;
mod cluster;
mod failure;
mod logs;
mod memory;
mod push;
mod registry;
