//! Domain types shared by every Sluice layer: sequence numbers, the clock,
//! and a lock-free latency histogram.
//!
//! Nothing here does I/O; time enters the system through [`Clock`].

mod clock;
mod histogram;
mod sequence_number;

pub use clock::{Clock, ControlledClock, ManualClock, SystemClock};
pub use histogram::{Histogram, HistogramSnapshot, LATENCY_BOUNDS_SECONDS};
pub use sequence_number::{ParseSequenceNumberError, SequenceNumber, SEQUENCE_NUMBER_DIGITS};
