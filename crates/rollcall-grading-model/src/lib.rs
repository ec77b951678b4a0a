//! Students and grades as both sides see them, with no storage and no HTTP:
//! the grading service (`rollcall-grades`) stores and serves them, the portal
//! (`rollcall-portal`) reads and sends them. Sharing this crate — not the
//! grading service's — keeps the portal talking to grading over HTTP only.
//!
//! - [`model`] (re-exported at the root): validated values ([`Score`],
//!   [`Title`], [`PersonName`], [`GradeType`]), the classic JSON shapes,
//!   averages.
//! - [`wire`]: what a client reads and sends, lenient where grading services
//!   differ.

pub mod model;
pub mod wire;

pub use model::*;
