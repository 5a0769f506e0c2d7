//! The Kinesis wire protocol, as bytes in and typed values out. The only crate
//! that knows AWS member names.
//!
//! - [`model`]: the AWS API model (botocore's `kinesis-2013-12-02.json`, embedded),
//!   loaded once into shapes and operations.
//! - [`validate`]: checks a request against its input shape (required members,
//!   lengths, ranges, patterns, enums) and words failures as AWS does.
//! - [`error`]: AWS-shaped errors (`__type` + `message`) and their HTTP statuses.
//! - [`cbor`]: AWS CBOR 1.1 bodies (the Java SDKs' default), to and from the JSON form.
//! - [`target`]: the `X-Amz-Target` header.
//! - [`fast`]: PutRecords decoded and Put/GetRecords answers written without a
//!   JSON tree per record (the general path stays the reference).

pub mod cbor;
pub mod error;
pub mod fast;
pub mod fast_cbor;
pub mod model;
pub mod target;
pub mod validate;

pub use error::{AwsError, ErrorCode};
pub use model::{kinesis, ApiModel};
