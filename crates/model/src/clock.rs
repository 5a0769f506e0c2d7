use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The one place time enters Sluice: milliseconds since the Unix epoch.
///
/// Everything below the server takes a clock instead of reading the OS clock, so
/// tests advance time instead of sleeping.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    fn now_ms(&self) -> u64;

    /// Stops following wall time: the clock stands at `now_ms` (or where it
    /// is) until advanced. False if this clock cannot be controlled.
    fn freeze(&self, now_ms: Option<u64>) -> bool {
        let _ = now_ms;
        false
    }

    /// Moves a frozen clock forward. False if it is not frozen.
    fn advance(&self, delta_ms: u64) -> bool {
        let _ = delta_ms;
        false
    }

    /// Follows wall time again (never going back). False if not controllable.
    fn thaw(&self) -> bool {
        false
    }

    /// Whether the clock stands still until advanced.
    fn is_frozen(&self) -> bool {
        false
    }
}

/// Wall-clock time.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// Wall time until frozen; then it moves only when advanced (the virtual
/// clock of `sluice serve --test-controls`). Thawed, it runs at wall speed
/// again from where it stood, so it stays ahead of wall time by what it was
/// advanced; it never goes backwards.
#[derive(Debug, Default)]
pub struct ControlledClock {
    /// 0: running; otherwise the frozen time.
    frozen_ms: AtomicU64,
    /// How far ahead of wall time the running clock is.
    ahead_ms: AtomicU64,
    /// The latest time handed out, so that nothing goes back.
    floor_ms: AtomicU64,
}

impl Clock for ControlledClock {
    fn now_ms(&self) -> u64 {
        let frozen = self.frozen_ms.load(Ordering::SeqCst);
        let now = if frozen != 0 {
            frozen
        } else {
            let running = SystemClock
                .now_ms()
                .saturating_add(self.ahead_ms.load(Ordering::SeqCst));
            running.max(self.floor_ms.load(Ordering::SeqCst))
        };
        self.floor_ms.fetch_max(now, Ordering::SeqCst);
        now
    }

    fn freeze(&self, now_ms: Option<u64>) -> bool {
        let current = self.now_ms();
        let at = now_ms.unwrap_or(current).max(current).max(1);
        self.frozen_ms.store(at, Ordering::SeqCst);
        true
    }

    fn advance(&self, delta_ms: u64) -> bool {
        self.frozen_ms
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |f| {
                (f != 0).then(|| f.saturating_add(delta_ms))
            })
            .is_ok()
    }

    fn thaw(&self) -> bool {
        let frozen = self.frozen_ms.load(Ordering::SeqCst);
        if frozen != 0 {
            let wall = SystemClock.now_ms();
            self.ahead_ms
                .store(frozen.saturating_sub(wall), Ordering::SeqCst);
            self.floor_ms.fetch_max(frozen, Ordering::SeqCst);
            self.frozen_ms.store(0, Ordering::SeqCst);
        }
        true
    }

    fn is_frozen(&self) -> bool {
        self.frozen_ms.load(Ordering::SeqCst) != 0
    }
}

/// A clock that moves only when told to (tests, and the virtual clock control).
#[derive(Debug, Default)]
pub struct ManualClock {
    now_ms: AtomicU64,
}

impl ManualClock {
    pub fn new(now_ms: u64) -> Self {
        Self {
            now_ms: AtomicU64::new(now_ms),
        }
    }

    pub fn set_ms(&self, now_ms: u64) {
        self.now_ms.store(now_ms, Ordering::SeqCst);
    }

    pub fn advance_ms(&self, delta_ms: u64) {
        self.now_ms.fetch_add(delta_ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now_ms.load(Ordering::SeqCst)
    }

    fn freeze(&self, now_ms: Option<u64>) -> bool {
        if let Some(at) = now_ms {
            self.now_ms.fetch_max(at, Ordering::SeqCst);
        }
        true
    }

    fn advance(&self, delta_ms: u64) -> bool {
        self.advance_ms(delta_ms);
        true
    }

    fn is_frozen(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_controlled_clock_freezes_advances_and_never_goes_back() {
        let c = ControlledClock::default();
        let wall = c.now_ms();
        assert!(!c.is_frozen());
        assert!(!c.advance(1), "only a frozen clock advances");
        assert!(c.freeze(None));
        let frozen = c.now_ms();
        assert!(frozen >= wall);
        assert_eq!(c.now_ms(), frozen, "it stands still");
        assert!(c.advance(3_600_000));
        assert_eq!(c.now_ms(), frozen + 3_600_000);
        // Thawed, it runs on from the advanced time.
        assert!(c.thaw());
        let thawed = c.now_ms();
        assert!(thawed >= frozen + 3_600_000);
        assert!(
            thawed < SystemClock.now_ms() + 3_600_000 + 60_000,
            "an hour ahead, not more"
        );
        // Freezing in the past is refused quietly: time never goes back.
        assert!(c.freeze(Some(1)));
        assert!(c.now_ms() >= frozen + 3_600_000);
    }
}
