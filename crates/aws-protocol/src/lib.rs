//! The AWS protocol layer, as bytes in and typed values out: the only crate
//! that knows AWS member names.
//!
//! - [`service`]: a service described once (model, signing name, streaming
//!   operations); [`service::KINESIS`].
//! - [`model`]: the AWS API model (botocore's `kinesis-2013-12-02.json`, embedded),
//!   loaded once into shapes and operations.
//! - [`validate`]: checks a request against its input shape (required members,
//!   lengths, ranges, patterns, enums) and words failures as AWS does.
//! - [`error`]: AWS-shaped errors (`__type` + `message`) and their HTTP statuses.
//! - [`cbor`]: AWS CBOR 1.1 bodies (the Java SDKs' default), to and from the JSON form.
//! - [`target`]: the `X-Amz-Target` header (AWS JSON).
//! - [`rest`]: REST-JSON routes by method and path, and the binding of URI
//!   labels, query parameters and headers into the JSON form (Kinesis Video).
//! - [`kinesis`]: every Kinesis request and response as a Rust type, generated
//!   from the model ([`codegen`], checked by `tests/codegen.rs`); [`types`]
//!   holds blobs and timestamps.
//! - [`sigv4`]: SigV4 signatures of received requests, parsed and verified.
//! - [`eventstream`]: the event-stream framing of streaming answers.
//! - [`fast`]: PutRecords decoded and Put/GetRecords answers written without a
//!   JSON tree per record (the general path stays the reference).

pub mod cbor;
#[doc(hidden)]
pub mod codegen;
pub mod error;
pub mod eventstream;
pub mod fast;
pub mod fast_cbor;
pub mod firehose;
pub mod kinesis;
pub mod model;
pub mod rest;
pub mod service;
pub mod sigv4;
pub mod target;
pub mod types;
pub mod validate;

pub use error::{AwsError, ErrorCode};
pub use model::{firehose, kinesis, ApiModel, Protocol};
pub use service::{Service, FIREHOSE, KINESIS};
