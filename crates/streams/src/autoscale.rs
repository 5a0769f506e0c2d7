//! ON_DEMAND streams that scale themselves: what their shards acknowledge is
//! counted here, and every window (`sluice_meta::scaling::WINDOW_MS` of the
//! server's clock) the policy in `sluice_meta::scaling` says which shards to
//! split or merge; `ops::autoscale` carries that out like SplitShard and
//! MergeShards would (without turning the stream UPDATING).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use sluice_meta::scaling::{Load, Scaler, WINDOW_MS};

/// A stream: its account and region, and its name.
pub type StreamKey = (sluice_meta::Scope, String);

#[derive(Debug, Default)]
pub struct Autoscaler {
    /// What on-demand shards acknowledged in the current window, by shard log id.
    loads: Mutex<Window>,
    /// The policy's memory by stream (account and region, name); held while
    /// a window's changes run, so that windows are handled one at a time.
    scalers: Mutex<HashMap<StreamKey, Scaler>>,
}

#[derive(Debug, Default)]
struct Window {
    loads: HashMap<u64, Load>,
    started_ms: Option<u64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Autoscaler {
    /// Counts an acknowledged append to an on-demand shard.
    pub fn record(&self, log_id: u64, load: Load) {
        let mut window = lock(&self.loads);
        window.loads.entry(log_id).or_default().add(
            load.records,
            load.bytes,
            load.min_hash,
            load.max_hash,
        );
    }

    /// The policy's memory, locked (one window is handled at a time).
    pub fn scalers(&self) -> MutexGuard<'_, HashMap<StreamKey, Scaler>> {
        lock(&self.scalers)
    }

    /// Ends the window if it has lasted `WINDOW_MS`: its length and loads.
    /// The first call only starts one.
    pub fn close_window(&self, now_ms: u64) -> Option<(u64, HashMap<u64, Load>)> {
        let mut window = lock(&self.loads);
        let Some(started) = window.started_ms else {
            window.started_ms = Some(now_ms);
            window.loads.clear();
            return None;
        };
        let elapsed = now_ms.saturating_sub(started);
        if elapsed < WINDOW_MS {
            return None;
        }
        window.started_ms = Some(now_ms);
        Some((elapsed, std::mem::take(&mut window.loads)))
    }
}
