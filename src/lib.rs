//! migstat turns raw migration records (household-survey microdata and administrative registers)
//! into the disaggregated statistics a migration observatory publishes.
//!
//! Data flow, one module per stage: [`spec`] compiles the pipeline TOML and its Table Schemas into
//! a checked plan; [`ingest`] reads sources into bounded raw chunks; [`validate`] checks every row
//! and splits accepted records from the [`quarantine`]; [`harmonize`] derives standard codes;
//! [`disaggregate`] and [`survey`] build count tables and design-based estimates; [`protect`]
//! applies disclosure control; [`export`] writes Parquet; [`release`] publishes atomically and
//! keeps the run history; [`runner`] drives the stages and accounts for every row; [`sample`]
//! generates the synthetic deliveries.
//! See ARCHITECTURE.md.

// Modules in data-flow order: each uses only modules above it (checked by
// tests/integration/structure.rs; `rustfmt.toml` keeps this order). Leaves first, then the
// stages a run goes through, then what reads a release.

// Leaves: shared by every stage, depending on nothing else.
pub mod error;
pub mod interrupt;
pub mod vocab;
pub mod calendar;
pub mod fault;
pub mod parallel;
pub mod tuning;
pub mod manifest;
pub mod layout;

// The plan: the spec compiled and checked before any data is read.
pub mod spec;

// The stages of a run, in order.
pub mod quarantine;
pub mod ingest;
pub mod validate;
pub mod harmonize;
pub mod residence;
pub mod disaggregate;
pub mod calibrate;
pub mod survey;
pub mod engine;
pub mod protect;
pub mod export;
pub mod release;
pub mod runner;

// Readers of a release, and the synthetic deliveries.
pub mod query;
pub mod trace;
#[cfg(feature = "sample")]
pub mod sample;

pub use error::{Error, Result};

/// The version of migstat, recorded in every manifest and Parquet file.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
