//! What `GET /health` reports: the problems an operator must act on, noted as
//! they happen (writes failing, shards poisoned or quarantined, the disk's
//! reserve in use), and warnings on standard error that a flood of failing
//! requests cannot turn into a flood of lines.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The same warning at most this often; the ones held back are counted.
const WARN_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub struct Health {
    /// The last append failed with an I/O error (a full disk, say) and none
    /// has succeeded since.
    write_failing: AtomicBool,
    last_write_error: Mutex<Option<String>>,
    /// The space kept for deletions (`Engine`'s reserve file) is in use.
    pub(crate) reserve_missing: AtomicBool,
}

impl Health {
    /// Called on every acknowledged append: one relaxed load when all is well.
    pub fn append_succeeded(&self) {
        if self.write_failing.load(Ordering::Relaxed) {
            self.write_failing.store(false, Ordering::Relaxed);
        }
    }

    pub fn append_failed(&self, log_id: u64, e: &sluice_log::AppendError) {
        let text = e.to_string();
        if let sluice_log::AppendError::Io(_) = e {
            *self
                .last_write_error
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(text.clone());
            self.write_failing.store(true, Ordering::Relaxed);
        }
        self.warn_limited(
            "append",
            format_args!("an append to shard log {log_id:016x} failed: {text}"),
        );
    }

    /// The problems that are not per shard.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.write_failing.load(Ordering::Relaxed) {
            let last = self
                .last_write_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
                .unwrap_or_default();
            problems.push(format!("appends are failing: {last}"));
        }
        if self.reserve_missing.load(Ordering::Relaxed) {
            problems.push(
                "the disk is full: the space kept for deleting streams is in use or could not be set aside"
                    .to_owned(),
            );
        }
        problems
    }

    /// See [`warn_limited`].
    pub fn warn_limited(&self, key: &'static str, message: impl std::fmt::Display) {
        warn_limited(key, message);
    }
}

/// Warns at most once a second per `key`, saying how many were held back.
pub fn warn_limited(key: &'static str, message: impl std::fmt::Display) {
    static WARNED: OnceLock<Mutex<HashMap<&'static str, (Instant, u64)>>> = OnceLock::new();
    let now = Instant::now();
    let held_back = {
        let mut warned = WARNED
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match warned.get_mut(key) {
            Some(entry) if now.duration_since(entry.0) < WARN_EVERY => {
                entry.1 += 1;
                return;
            }
            Some(entry) => {
                let held_back = entry.1;
                *entry = (now, 0);
                held_back
            }
            None => {
                warned.insert(key, (now, 0));
                0
            }
        }
    };
    match held_back {
        0 => crate::warn(message),
        n => crate::warn(format_args!("{message} ({n} more like it held back)")),
    }
}
