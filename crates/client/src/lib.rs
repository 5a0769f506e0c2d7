//! A Kinesis client for Rust programs, used by `sluice bench`, `sluice put`,
//! `sluice tail` and `sluice agent`; it works against Sluice and AWS alike.
//!
//! - [`conn`]: one SigV4-signed HTTP/1.1 (or TLS) connection.
//! - [`api`]: typed calls and AWS errors.
//! - [`producer`]: batching, linger, retries with backoff and jitter,
//!   per-key ordering, bounded memory, KPL aggregation.
//! - [`consumer`]: every shard in lineage order, de-aggregated, from any
//!   starting position, with checkpoints.
//! - [`kpl`]: the KPL aggregated record format.
//! - [`large`]: records larger than the stream takes (compression, claim
//!   check, chunks) and their reassembly.
//! - [`credentials`]: keys and region from the environment and the AWS
//!   profile files.

pub mod api;
pub mod conn;
pub mod consumer;
pub mod credentials;
pub mod kpl;
pub mod large;
pub mod producer;
pub mod time;

pub use api::{Api, Error};
pub use conn::Target;
