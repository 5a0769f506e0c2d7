//! Domain types shared by every Sluice layer: sequence numbers, names and
//! keys validated when made (stream names, shard ids, account ids, hash
//! keys, ARNs: the one ARN parser), the clock, and a lock-free latency
//! histogram.
//!
//! Nothing here does I/O; time enters the system through [`Clock`].

mod clock;
mod histogram;
mod names;
mod sequence_number;

pub use clock::{Clock, ControlledClock, ManualClock, SystemClock};
pub use histogram::{Histogram, HistogramSnapshot, LATENCY_BOUNDS_SECONDS};
pub use names::{is_region, partition, AccountId, Arn, HashKey, Invalid, ShardId, StreamName};
pub use sequence_number::{ParseSequenceNumberError, SequenceNumber, SEQUENCE_NUMBER_DIGITS};
