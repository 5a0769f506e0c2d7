//! Controls for tests (`sluice serve --test-controls`; off by default): a
//! virtual clock, fault injection, shard throttling and reset. They live on
//! paths under `/_sluice/`, which no Kinesis client sends to (the Kinesis API
//! is `POST /` with an `X-Amz-Target`), and take and give plain JSON.
//!
//! | request | effect |
//! |---|---|
//! | `GET /_sluice/clock` | `{"nowMs", "frozen"}` |
//! | `POST /_sluice/clock {"freeze": true, "nowMs"?}` | the clock stands still (at `nowMs`, which may not be in its past) |
//! | `POST /_sluice/clock {"advanceMs": n}` | a frozen clock moves on; retention, deletions, on-demand scaling and expiries follow at once |
//! | `POST /_sluice/clock {"thaw": true}` | the clock runs at wall speed again, from where it stood |
//! | `POST /_sluice/faults {"operation", "count"?, "error"?, "message"?, "latencyMs"?, "streamName"?, "shardId"?}` | the next `count` (default 1) calls of the operation (for that stream / shard) wait `latencyMs` and fail with `error` |
//! | `DELETE /_sluice/faults` | no more faults |
//! | `POST /_sluice/throttle {"streamName", "shardId", "forMs"}` | the shard refuses reads and writes (ProvisionedThroughputExceededException) for `forMs` of the server's clock |
//! | `POST /_sluice/reset` | every stream of every account is deleted at once; faults and throttles are dropped (the clock stays as it is) |

use std::sync::Mutex;

use serde_json::{json, Value};
use sluice_aws::{AwsError, ErrorCode};

use crate::state::State;

pub const PREFIX: &str = "/_sluice/";

/// Refuses a control request that a web page elsewhere could have made (a
/// cross-site form post, a DNS-rebound name): the Host must be `localhost`
/// or an IP address, an Origin (browsers send one with every cross-site
/// request that can change something) must be this very host, and a POST
/// must carry `Content-Type: application/json`, which no form and no
/// request without a CORS preflight can send (the server answers no preflight).
pub fn check_origin(parts: &hyper::http::request::Parts) -> Result<(), String> {
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let host = header("host")
        .or_else(|| parts.uri.authority().map(|a| a.to_string()))
        .unwrap_or_default();
    if !is_local_host(&host) {
        return Err(format!(
            "test controls answer only requests to localhost or an IP address, not to {:?}",
            sluice_aws::sigv4::bounded(&host)
        ));
    }
    if let Some(origin) = header("origin") {
        let own = ["http://", "https://"]
            .iter()
            .any(|scheme| origin.strip_prefix(scheme) == Some(host.as_str()));
        if !own {
            return Err(format!(
                "test controls refuse requests from another origin ({:?})",
                sluice_aws::sigv4::bounded(&origin)
            ));
        }
    }
    if header("sec-fetch-site").is_some_and(|site| site == "cross-site" || site == "same-site") {
        return Err("test controls refuse cross-site requests".to_owned());
    }
    if parts.method == hyper::Method::POST {
        let json = header("content-type").is_some_and(|t| {
            t.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
        });
        if !json {
            return Err(
                "test controls take POST requests with Content-Type: application/json".to_owned(),
            );
        }
    }
    Ok(())
}

/// `localhost` or an IP address, with or without a port.
fn is_local_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        // [v6]:port
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                name
            } else {
                host
            }
        }),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
}

/// At most this many faults wait at once.
const FAULTS_MAX: usize = 1_000;
/// The clock moves at most this far in one advance (ten years).
const ADVANCE_MAX_MS: u64 = 10 * 365 * 24 * 3600 * 1000;

#[derive(Debug, Clone)]
struct Fault {
    operation: String,
    stream: Option<String>,
    shard: Option<String>,
    remaining: u64,
    latency_ms: u64,
    error: Option<AwsError>,
}

/// Injected faults, matched in the order they were added.
#[derive(Debug, Default)]
pub struct Faults {
    list: Mutex<Vec<Fault>>,
    /// How many wait: every request asks whether any do, without a lock.
    waiting: std::sync::atomic::AtomicUsize,
}

impl Faults {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Fault>> {
        self.list.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.load(std::sync::atomic::Ordering::Relaxed) == 0
    }

    pub fn clear(&self) {
        let mut list = self.lock();
        list.clear();
        self.counted(&list);
    }

    fn add(&self, fault: Fault) -> usize {
        let mut list = self.lock();
        list.push(fault);
        self.counted(&list);
        list.len()
    }

    fn counted(&self, list: &[Fault]) {
        self.waiting
            .store(list.len(), std::sync::atomic::Ordering::Relaxed);
    }

    /// The fault this call meets, counted down: (latency, error).
    pub fn take(
        &self,
        operation: &str,
        stream: Option<&str>,
        shard: Option<&str>,
    ) -> Option<(u64, Option<AwsError>)> {
        let mut list = self.lock();
        let i = list.iter().position(|f| {
            f.operation == operation
                && f.stream.as_deref().is_none_or(|s| Some(s) == stream)
                && f.shard.as_deref().is_none_or(|s| Some(s) == shard)
        })?;
        let fault = &mut list[i];
        fault.remaining -= 1;
        let out = (fault.latency_ms, fault.error.clone());
        if fault.remaining == 0 {
            list.remove(i);
            self.counted(&list);
        }
        Some(out)
    }
}

type Answer = Result<Value, (u16, String)>;

fn bad(message: impl Into<String>) -> (u16, String) {
    (400, message.into())
}

/// Handles one control request; runs on the blocking pool.
pub fn handle(state: &State, method: &str, path: &str, body: &[u8]) -> Answer {
    let input: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(body).map_err(|e| bad(format!("the body is not JSON: {e}")))?
    };
    match (method, path.strip_prefix(PREFIX).unwrap_or_default()) {
        ("GET", "clock") => Ok(clock_json(state)),
        ("POST", "clock") => clock(state, &input),
        ("POST", "faults") => add_fault(state, &input),
        ("DELETE", "faults") => {
            state.faults.clear();
            Ok(json!({}))
        }
        ("POST", "throttle") => throttle(state, &input),
        ("POST", "reset") => {
            state.faults.clear();
            // Firehose's internal streams go too, but are not Kinesis streams.
            let internal = sluice_streams::ops::internal_streams(&state.engine).len();
            let streams = state
                .reset()
                .map_err(|e| (500, e.to_string()))?
                .saturating_sub(internal);
            let delivery_streams = state
                .firehose
                .reset()
                .map_err(|e| (500, e.message.clone()))?;
            Ok(json!({"streamsDeleted": streams, "deliveryStreamsDeleted": delivery_streams}))
        }
        _ => Err((404, format!("no control {method} {path}"))),
    }
}

fn clock_json(state: &State) -> Value {
    json!({"nowMs": state.now_ms(), "frozen": state.clock.is_frozen()})
}

fn clock(state: &State, input: &Value) -> Answer {
    let clock = &state.clock;
    let asked: Vec<&str> = ["freeze", "advanceMs", "thaw"]
        .into_iter()
        .filter(|k| input.get(*k).is_some())
        .collect();
    if asked.len() != 1 {
        return Err(bad("say one of freeze, advanceMs or thaw"));
    }
    let done = if let Some(ms) = input.get("advanceMs") {
        let ms = ms
            .as_u64()
            .filter(|ms| *ms <= ADVANCE_MAX_MS)
            .ok_or_else(|| {
                bad(format!(
                    "advanceMs must be a whole number from 0 to {ADVANCE_MAX_MS}"
                ))
            })?;
        if !clock.advance(ms) {
            return Err(bad("the clock is not frozen: freeze it first"));
        }
        true
    } else if input.get("freeze") == Some(&json!(true)) {
        let at = match input.get("nowMs") {
            None => None,
            Some(v) => {
                let at = v
                    .as_u64()
                    .ok_or_else(|| bad("nowMs must be a whole number"))?;
                if at < state.now_ms() {
                    return Err(bad("nowMs is in the clock's past: time never goes back"));
                }
                Some(at)
            }
        };
        clock.freeze(at)
    } else if input.get("thaw") == Some(&json!(true)) {
        clock.thaw()
    } else {
        return Err(bad("freeze and thaw take true"));
    };
    if !done {
        return Err(bad("this server's clock cannot be controlled"));
    }
    // What the new time makes due happens now, not at the next tick:
    // Firehose deliveries due at the new time are written before this
    // answers (runs on the blocking pool).
    // Deliveries first: records due at the new time are delivered before
    // retention at that time could remove them.
    let settled = tokio::runtime::Handle::current()
        .block_on(state.firehose.settle(std::time::Duration::from_secs(30)));
    if !settled {
        tracing::warn!("firehose deliveries did not settle within 30 s of moving the clock");
    }
    state.housekeeping();
    Ok(clock_json(state))
}

fn add_fault(state: &State, input: &Value) -> Answer {
    let text = |m: &str| input.get(m).and_then(Value::as_str).map(str::to_owned);
    let operation = text("operation").ok_or_else(|| bad("operation is required"))?;
    if sluice_aws::kinesis().operation(&operation).is_none() {
        return Err(bad(format!("{operation} is not a Kinesis operation")));
    }
    // A filter the operation's requests cannot carry would never match.
    let names_a_stream = sluice_aws::kinesis::names_a_stream(&operation);
    let names_a_shard = sluice_aws::kinesis::names_a_shard(&operation);
    if text("streamName").is_some() && !names_a_stream {
        return Err(bad(format!(
            "{operation} requests do not name a stream: drop streamName"
        )));
    }
    if text("shardId").is_some() && !names_a_shard {
        return Err(bad(format!(
            "{operation} requests do not name a shard: drop shardId (POST /_sluice/throttle throttles a shard's reads and writes)"
        )));
    }
    let error = match text("error") {
        None => None,
        Some(name) => {
            let code = ErrorCode::from_name(&name)
                .ok_or_else(|| bad(format!("{name} is not an error Sluice answers with")))?;
            let message = text("message").unwrap_or_else(|| format!("Injected {name}."));
            Some(AwsError::new(code, message))
        }
    };
    let latency_ms = input.get("latencyMs").and_then(Value::as_u64).unwrap_or(0);
    if error.is_none() && latency_ms == 0 {
        return Err(bad("a fault needs an error, a latencyMs, or both"));
    }
    let count = input.get("count").and_then(Value::as_u64).unwrap_or(1);
    if count == 0 {
        return Err(bad("count must be at least 1"));
    }
    if state.faults.lock().len() >= FAULTS_MAX {
        return Err(bad(format!("at most {FAULTS_MAX} faults can wait at once")));
    }
    let waiting = state.faults.add(Fault {
        operation,
        stream: text("streamName"),
        shard: text("shardId"),
        remaining: count,
        latency_ms: latency_ms.min(60_000),
        error,
    });
    Ok(json!({"faults": waiting}))
}

fn throttle(state: &State, input: &Value) -> Answer {
    let text = |m: &str| input.get(m).and_then(Value::as_str);
    // A stream name (of `accountId` and `region`, else the defaults), or a
    // stream ARN, which names its account and region.
    let arn = text("streamName").and_then(|given| sluice_model::Arn::parse(given).ok());
    let stream = match &arn {
        Some(arn) => Some(arn.stream_name()),
        None => text("streamName"),
    };
    let (Some(stream), Some(shard)) = (stream, text("shardId")) else {
        return Err(bad(
            "streamName (a name or an ARN) and shardId are required",
        ));
    };
    let for_ms = input
        .get("forMs")
        .and_then(Value::as_u64)
        .ok_or_else(|| bad("forMs is required"))?;
    let scope = match &arn {
        Some(arn) => sluice_meta::Scope::new(arn.account(), arn.region()),
        None => sluice_meta::Scope::new(
            text("accountId").unwrap_or(&state.config.account_id),
            text("region").unwrap_or(&state.config.region),
        ),
    };
    let log_id = {
        let catalog = state.catalog();
        catalog
            .stream(&scope, stream)
            .and_then(|s| {
                sluice_meta::parse_shard_id(shard)
                    .and_then(|i| s.shard(i))
                    .map(|sh| sh.log_id)
            })
            .ok_or_else(|| (404, format!("no shard {shard} in stream {stream}")))?
    };
    let until = state.now_ms().saturating_add(for_ms);
    state.throttles.block(log_id, until);
    Ok(json!({"untilMs": until}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_match_in_order_and_count_down() {
        let faults = Faults::default();
        let err = |n: &str| Some(AwsError::new(ErrorCode::from_name(n).unwrap(), "x"));
        assert!(faults.is_empty());
        faults.add(Fault {
            operation: "PutRecord".into(),
            stream: Some("a".into()),
            shard: None,
            remaining: 2,
            latency_ms: 0,
            error: err("ProvisionedThroughputExceededException"),
        });
        assert!(
            faults.take("PutRecord", Some("b"), None).is_none(),
            "another stream"
        );
        assert!(
            faults.take("GetRecords", Some("a"), None).is_none(),
            "another operation"
        );
        assert!(faults.take("PutRecord", Some("a"), None).is_some());
        assert!(faults.take("PutRecord", Some("a"), None).is_some());
        assert!(
            faults.take("PutRecord", Some("a"), None).is_none(),
            "used up"
        );
        assert!(faults.is_empty());
    }
}
