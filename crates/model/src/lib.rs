//! Domain types shared by every Sluice layer: sequence numbers and the clock.
//!
//! Nothing here does I/O; time enters the system through [`Clock`].

mod clock;
mod sequence_number;

pub use clock::{Clock, ControlledClock, ManualClock, SystemClock};
pub use sequence_number::{ParseSequenceNumberError, SequenceNumber, SEQUENCE_NUMBER_DIGITS};
