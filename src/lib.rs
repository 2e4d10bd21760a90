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

pub mod disaggregate;
pub mod error;
pub mod export;
pub mod harmonize;
pub mod ingest;
pub mod protect;
pub mod quarantine;
pub mod query;
pub mod release;
pub mod residence;
pub mod runner;
pub mod sample;
pub mod spec;
pub mod survey;
pub mod validate;

pub use error::{Error, Result};

/// The version of migstat, recorded in every manifest and Parquet file.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
