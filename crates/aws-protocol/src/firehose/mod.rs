//! Amazon Data Firehose's requests and responses, typed: generated from
//! `spec/firehose-2015-08-04.json` into [`shapes`] (checked by
//! `tests/codegen.rs`).

// Generated: formatted as rendered, so that the check compares like with like.
#[rustfmt::skip]
mod shapes;

pub use shapes::*;
