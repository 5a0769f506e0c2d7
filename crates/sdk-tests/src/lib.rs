//! Nothing here: this package only holds `tests/`, which drive a real Sluice
//! server with the Rust `aws-sdk-kinesis`.
