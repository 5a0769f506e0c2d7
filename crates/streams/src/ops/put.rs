//! PutRecord and PutRecords: decoding what the general path hands over,
//! routing by hash key, per-shard limits, appends to the journal, and the
//! wait for the group-commit round ([`PendingPut`]).

use super::*;

/// The hash key that routes a record: ExplicitHashKey, or MD5 of the partition key.
pub(super) fn hash_of(partition_key: &str, explicit: Option<&str>) -> Result<u128, AwsError> {
    if let Some(explicit) = explicit {
        return sluice_model::HashKey::parse(explicit).map(|k| k.0).map_err(|_| {
            err(
                ErrorCode::InvalidArgumentException,
                format!("Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. Specified value was {explicit}"),
            )
        });
    }
    Ok(u128::from_be_bytes(
        Md5::digest(partition_key.as_bytes()).into(),
    ))
}

/// A PutRecord or PutRecords done up to the durable point: its records are
/// in the journal, not yet acknowledged. [`PendingPut::finish`] awaits the
/// group-commit round (no thread waits) and renders the answer.
#[derive(Debug)]
pub struct PendingPut {
    scope: Scope,
    stream: String,
    shape: PutShape,
    outcome: PutOutcome,
    durability: PutDurability,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PutShape {
    /// PutRecord: one result, or the error.
    Record,
    /// PutRecords: a result per entry.
    Records,
}

/// What a put answers once durable.
#[derive(Debug)]
pub enum PutAnswer {
    Record(k::PutRecordOutput),
    Records(PutRecordsAnswer),
}

/// PutRecords' answer, for the caller to encode (straight into bytes: no
/// value tree for 500 entries).
#[derive(Debug)]
pub struct PutRecordsAnswer {
    pub failed: usize,
    /// Per entry, in request order.
    pub results: Vec<Result<(u128, u32), EntryError>>,
    pub encryption: k::EncryptionType,
}

/// Why one PutRecords entry failed: its ErrorCode and ErrorMessage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryError {
    pub code: &'static str,
    pub message: String,
}

impl PendingPut {
    pub(super) fn new(
        scope: Scope,
        stream: String,
        shape: PutShape,
        outcome: PutOutcome,
        durability: PutDurability,
    ) -> Self {
        Self {
            scope,
            stream,
            shape,
            outcome,
            durability,
        }
    }

    /// Awaits durability, then the answer.
    pub async fn finish(mut self, state: &Engine) -> Result<PutAnswer, AwsError> {
        let durability = std::mem::take(&mut self.durability);
        durability.wait(state, &mut self.outcome).await;
        self.count(state);
        self.render(state)
    }

    /// Counts what the stream took in and refused (for `/metrics`).
    fn count(&self, state: &Engine) {
        let put = &self.outcome;
        let throttled = if put.failed == 0 {
            0
        } else {
            put.results
                .iter()
                .filter(|r| matches!(r, Err(PutFailure::Throttled(_))))
                .count()
        };
        let counters = state.stats.stream(&self.scope, &self.stream);
        counters.incoming_records.fetch_add(
            (put.results.len() - put.failed) as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        counters
            .incoming_bytes
            .fetch_add(put.ok_bytes, std::sync::atomic::Ordering::Relaxed);
        if throttled > 0 {
            counters
                .throttled_records
                .fetch_add(throttled as u64, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn render(self, state: &Engine) -> Result<PutAnswer, AwsError> {
        let ctx = &Ctx {
            state,
            scope: self.scope,
        };
        let name = &self.stream;
        let put = &self.outcome;
        match self.shape {
            PutShape::Record => {
                let (sequence, shard) = match put.results[0] {
                    Ok(done) => done,
                    Err(PutFailure::Throttled(shard)) => {
                        return Err(rate_exceeded(ctx, name, shard))
                    }
                    Err(PutFailure::Internal) => return Err(internal("the append failed")),
                    Err(PutFailure::Quarantined { shard, from, until }) => {
                        return Err(quarantined_range(
                            &ctx.scope.account,
                            name,
                            shard,
                            from,
                            until,
                        ))
                    }
                };
                Ok(PutAnswer::Record(k::PutRecordOutput {
                    shard_id: sluice_meta::shard_id(shard),
                    sequence_number: SequenceNumber(sequence).to_string(),
                    encryption_type: Some(put.encryption),
                }))
            }
            PutShape::Records => Ok(PutAnswer::Records(PutRecordsAnswer {
                failed: put.failed,
                results: put
                    .results
                    .iter()
                    .map(|r| {
                        r.map_err(|failure| {
                            let (code, message) = put_failure(ctx, name, failure);
                            EntryError { code, message }
                        })
                    })
                    .collect(),
                encryption: put.encryption,
            })),
        }
    }
}

/// PutRecords from the fast decoder (AWS JSON), up to the durable point.
pub fn begin_put_records_fast(
    state: &Engine,
    scope: Scope,
    request: &sluice_aws::fast::PutRecordsRequest<'_>,
) -> Result<PendingPut, AwsError> {
    let state = &Ctx { state, scope };
    let entries = request
        .records
        .iter()
        .map(|r| {
            Ok(PutEntry {
                key: &r.partition_key,
                data: request.data_of(r).into(),
                hash: hash_of(&r.partition_key, r.explicit_hash_key.as_deref())?,
            })
        })
        .collect::<Result<Vec<_>, AwsError>>()?;
    let (outcome, durability) = put_entries_unsynced(state, &request.stream_name, &entries)?;
    Ok(PendingPut {
        scope: state.scope.clone(),
        stream: request.stream_name.to_string(),
        shape: PutShape::Records,
        outcome,
        durability,
    })
}

/// `path` names the member in the error; it is only built on failure.
pub(super) fn check_record_size(
    stream: &Stream,
    path: impl FnOnce() -> String,
    key: &str,
    data: &[u8],
) -> Result<(), AwsError> {
    let max = stream.max_record_size_kib as usize * 1024;
    if data.len() > max {
        let path = path();
        return Err(err(
            ErrorCode::ValidationException,
            format!("1 validation error detected: Value at '{path}' failed to satisfy constraint: Member must have length less than or equal to {max}"),
        ));
    }
    if data.len() + key.len() > max {
        // The data alone fits: say that the key is counted too.
        let path = path();
        return Err(err(
            ErrorCode::ValidationException,
            format!(
                "1 validation error detected: Value at '{path}' failed to satisfy constraint: the data ({} bytes) and the partition key ({} bytes) together must be at most the stream's maximum record size, {max} bytes",
                data.len(),
                key.len()
            ),
        ));
    }
    Ok(())
}

/// AWS's answer to a PutRecords over 10 MiB (data and partition keys).
pub fn records_size_exceeded() -> AwsError {
    err(
        ErrorCode::InvalidArgumentException,
        format!("Records size exceeds {PUT_RECORDS_MAX_BYTES} bytes limit"),
    )
}

/// PutRecord from a fast decoder (a one-record request, plainly valid):
/// the general path's checks in its order, without the value tree.
pub fn begin_put_record_fast(
    state: &Engine,
    scope: Scope,
    request: &sluice_aws::fast::PutRecordsRequest<'_>,
) -> Result<PendingPut, AwsError> {
    let state = &Ctx { state, scope };
    let record = &request.records[0];
    let key: &str = &record.partition_key;
    let hash = hash_of(key, record.explicit_hash_key.as_deref())?;
    put_one(
        state,
        &request.stream_name,
        key,
        request.data_of(record),
        hash,
    )
}

/// PutRecord after decoding and the hash key: the stream, the record's
/// size (worded for PutRecord), then the append.
fn put_one(
    state: &Ctx,
    name: &str,
    key: &str,
    data: &[u8],
    hash: u128,
) -> Result<PendingPut, AwsError> {
    with_named_stream(state, name, |stream| {
        check_not_deleting(state, stream)?;
        check_record_size(stream, || "data".to_owned(), key, data)
    })?;
    let entry = PutEntry {
        key,
        data: data.into(),
        hash,
    };
    let (outcome, durability) = put_entries_unsynced(state, name, std::slice::from_ref(&entry))?;
    Ok(PendingPut {
        scope: state.scope.clone(),
        stream: name.to_owned(),
        shape: PutShape::Record,
        outcome,
        durability,
    })
}

pub(super) fn put_record_begin(
    state: &Ctx,
    input: k::PutRecordInput,
) -> Result<PendingPut, AwsError> {
    let key = input.partition_key.as_str();
    let name = stream_name(state, StreamRef::new(&input.stream_name, &input.stream_arn))?;
    if let Some(seq) = input.sequence_number_for_ordering.as_deref() {
        // Sequence numbers only ever grow, so any earlier number is
        // satisfied; one that is not a sequence number is refused in AWS's
        // words (kinesalite's putRecord tests).
        seq.parse::<SequenceNumber>().map_err(|_| {
            err(
                ErrorCode::InvalidArgumentException,
                format!(
                    "ExclusiveMinimumSequenceNumber {seq} used in PutRecord on stream {name} under account {} is invalid.",
                    state.scope.account
                ),
            )
        })?;
    }
    let hash = hash_of(key, input.explicit_hash_key.as_deref())?;
    put_one(state, &name, key, &input.data.0, hash)
}

pub(super) fn put_records_begin(
    state: &Ctx,
    input: k::PutRecordsInput,
) -> Result<PendingPut, AwsError> {
    let name = stream_name(state, StreamRef::new(&input.stream_name, &input.stream_arn))?;
    let entries = input
        .records
        .iter()
        .map(|e| {
            Ok(PutEntry {
                key: &e.partition_key,
                data: e.data.0.as_slice().into(),
                hash: hash_of(&e.partition_key, e.explicit_hash_key.as_deref())?,
            })
        })
        .collect::<Result<Vec<_>, AwsError>>()?;
    let (outcome, durability) = put_entries_unsynced(state, &name, &entries)?;
    Ok(PendingPut {
        scope: state.scope.clone(),
        stream: name,
        shape: PutShape::Records,
        outcome,
        durability,
    })
}

/// One record of a PutRecords (or PutRecord), decoded.
#[derive(Debug)]
pub(crate) struct PutEntry<'a> {
    pub key: &'a str,
    pub data: std::borrow::Cow<'a, [u8]>,
    /// The hash key that routes it.
    pub hash: u128,
}

/// Why one entry of a PutRecords failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PutFailure {
    Internal,
    /// The shard (by index) is over its write limit.
    Throttled(u32),
    /// The shard (by index) is quarantined: damaged from `from` (up to `until`).
    Quarantined {
        shard: u32,
        from: u128,
        until: Option<u128>,
    },
}

/// AWS's ProvisionedThroughputExceededException for one shard.
pub(super) fn rate_exceeded(state: &Ctx, stream: &str, shard: u32) -> AwsError {
    err(
        ErrorCode::ProvisionedThroughputExceededException,
        format!(
            "Rate exceeded for shard {} in stream {stream} under account {}.",
            sluice_meta::shard_id(shard),
            state.scope.account
        ),
    )
}

/// A failed PutRecords entry's ErrorCode and ErrorMessage.
pub(super) fn put_failure(
    state: &Ctx,
    stream: &str,
    failure: PutFailure,
) -> (&'static str, String) {
    match failure {
        PutFailure::Internal => ("InternalFailure", "Internal service failure.".to_owned()),
        PutFailure::Throttled(shard) => (
            "ProvisionedThroughputExceededException",
            rate_exceeded(state, stream, shard).message,
        ),
        PutFailure::Quarantined { shard, from, until } => (
            "InternalFailure",
            quarantined_range(&state.scope.account, stream, shard, from, until).message,
        ),
    }
}

/// What PutRecords did, per entry in request order: the sequence number and
/// shard index, or why that entry failed.
#[derive(Debug)]
pub(crate) struct PutOutcome {
    pub results: Vec<Result<(u128, u32), PutFailure>>,
    pub failed: usize,
    /// Bytes (data and partition key) of the entries that succeeded.
    pub ok_bytes: u64,
    pub encryption: k::EncryptionType,
}

/// PutRecords after decoding: checks sizes, routes each entry, appends one
/// batch per shard (one frame and one fsync round each, shards in parallel).
/// The outcome is provisional until the [`PutDurability`] is waited for.
pub(crate) fn put_entries_unsynced(
    state: &Ctx,
    name: &str,
    entries: &[PutEntry<'_>],
) -> Result<(PutOutcome, PutDurability), AwsError> {
    let mut durability = PutDurability::default();
    let total: usize = entries.iter().map(|e| e.data.len() + e.key.len()).sum();
    if total > PUT_RECORDS_MAX_BYTES {
        return Err(records_size_exceeded());
    }
    let (flags, encryption) = with_named_stream(state, name, |stream| {
        check_not_deleting(state, stream)?;
        for (i, e) in entries.iter().enumerate() {
            check_record_size(
                stream,
                || format!("records.{}.member.data", i + 1),
                e.key,
                &e.data,
            )?;
        }
        Ok((record_flags(stream), encryption_type(stream)))
    })?;
    let mut results: Vec<Result<(u128, u32), PutFailure>> =
        vec![Err(PutFailure::Internal); entries.len()];
    let mut shard_of = vec![0u32; entries.len()];
    let mut pending: Vec<usize> = (0..entries.len()).collect();
    let mut ok_bytes = 0u64;
    // A split or merge may close a shard between routing and appending; its
    // entries are routed again to the children, so each record lands in
    // exactly one shard.
    for attempt in 0..RESHARD_RETRIES {
        // (shard log, entry), sorted: each shard's entries in request order,
        // in one flat list (no allocation per shard).
        let mut routed: Vec<(u64, usize)> = Vec::with_capacity(pending.len());
        let mut on_demand = false;
        with_named_stream(state, name, |stream| {
            check_not_deleting(state, stream)?;
            on_demand = stream.mode == StreamMode::OnDemand;
            let open = stream.open_shards_by_hash_key();
            for &i in &pending {
                let s = sluice_meta::route(&open, entries[i].hash);
                shard_of[i] = s.index;
                routed.push((s.log_id, i));
            }
            Ok(())
        })?;
        routed.sort_unstable();
        // Services' own streams answer to the service's quotas, not Kinesis'.
        let limited = state.config.enforce_limits && !state.scope.is_internal();
        if attempt == 0 && (limited || state.throttles.any_blocked()) {
            // Each record is admitted (or throttled) once, by the shard it
            // first routes to, in request order.
            let now = state.now_ms();
            let mut admitted = Vec::with_capacity(routed.len());
            for run in routed.chunk_by(|a, b| a.0 == b.0) {
                let log_id = run[0].0;
                let blocked = state.throttles.is_blocked(log_id, now);
                let mut shard = state.throttles.shard(log_id, state.config.capacity, now);
                for &(_, i) in run {
                    let bytes = (entries[i].key.len() + entries[i].data.len()) as u64;
                    if !blocked && (!limited || shard.admit_write(bytes)) {
                        admitted.push((log_id, i));
                    } else {
                        results[i] = Err(PutFailure::Throttled(shard_of[i]));
                    }
                }
            }
            routed = admitted;
        }
        let mut groups = Groups::of(routed);
        groups.bytes = (0..groups.len())
            .map(|g| {
                groups
                    .entries(g)
                    .iter()
                    .map(|&i| (entries[i].key.len() + entries[i].data.len()) as u64)
                    .sum()
            })
            .collect();
        let (outcomes, round) = append_groups(state, &groups, entries, flags);
        pending.clear();
        for (g, outcome) in outcomes.iter().enumerate() {
            let (log_id, indexes) = (groups.log_id(g), groups.entries(g));
            match outcome {
                Ok(receipt) => {
                    for (n, &i) in indexes.iter().enumerate() {
                        results[i] = Ok((receipt.sequence(n), shard_of[i]));
                    }
                    ok_bytes += groups.bytes[g];
                    if on_demand {
                        let mut load = sluice_meta::scaling::Load::default();
                        for &i in indexes {
                            let bytes = entries[i].key.len() + entries[i].data.len();
                            load.add(1, bytes as u64, entries[i].hash, entries[i].hash);
                        }
                        state.autoscaler.record(log_id, load);
                    }
                }
                Err(AppendFailure::Closed) => pending.extend(indexes),
                Err(AppendFailure::StreamGone) => return Err(not_found(state, name)),
                Err(AppendFailure::Quarantined { from, until }) => {
                    for &i in indexes {
                        results[i] = Err(PutFailure::Quarantined {
                            shard: shard_of[i],
                            from: *from,
                            until: *until,
                        });
                    }
                }
                Err(AppendFailure::Internal) => {}
            }
        }
        if let Some(mut round) = round {
            round.groups = groups;
            durability.rounds.push(round);
        }
        if pending.is_empty() {
            break;
        }
        pending.sort_unstable();
    }
    let failed = results.iter().filter(|r| r.is_err()).count();
    Ok((
        PutOutcome {
            results,
            failed,
            ok_bytes,
            encryption,
        },
        durability,
    ))
}

/// A put's entries grouped by shard log: each group's entries (request
/// indexes, in request order) are one run of a flat list.
#[derive(Debug, Default)]
pub(super) struct Groups {
    /// Entry indexes, group after group.
    entries: Vec<usize>,
    /// Per group: its shard log and where its run ends in `entries`.
    groups: Vec<(u64, usize)>,
    /// Per group: bytes of its entries (data and partition keys).
    bytes: Vec<u64>,
}

impl Groups {
    /// From (shard log, entry) pairs sorted by shard log.
    fn of(routed: Vec<(u64, usize)>) -> Self {
        let mut groups: Vec<(u64, usize)> = Vec::new();
        let mut entries = Vec::with_capacity(routed.len());
        for (n, (log_id, i)) in routed.into_iter().enumerate() {
            match groups.last_mut() {
                Some(last) if last.0 == log_id => last.1 = n + 1,
                _ => groups.push((log_id, n + 1)),
            }
            entries.push(i);
        }
        Self {
            entries,
            groups,
            bytes: Vec::new(),
        }
    }

    fn len(&self) -> usize {
        self.groups.len()
    }

    fn log_id(&self, g: usize) -> u64 {
        self.groups[g].0
    }

    fn entries(&self, g: usize) -> &[usize] {
        let start = if g == 0 { 0 } else { self.groups[g - 1].1 };
        &self.entries[start..self.groups[g].1]
    }
}

/// How often a put is routed again because resharding closed its shard.
pub(super) const RESHARD_RETRIES: usize = 8;

/// Why one shard's append of a PutRecords failed.
#[derive(Debug)]
pub(super) enum AppendFailure {
    /// A split or merge closed the shard first: route again.
    Closed,
    /// The stream was deleted while the request ran.
    StreamGone,
    /// Damage on disk: from this sequence number (up to that one).
    Quarantined {
        from: u128,
        until: Option<u128>,
    },
    Internal,
}

/// Appends each group (shard log id, request indexes) as one batch, all in
/// one call to the log: one journal write and one group-commit round for
/// the whole request, however many shards it touches. Outcomes in the
/// order of the groups; the round (if any) gets the groups once the caller
/// is done with them.
pub(super) fn append_groups(
    state: &Ctx,
    groups: &Groups,
    entries: &[PutEntry<'_>],
    flags: u8,
) -> (
    Vec<Result<sluice_log::AppendReceipt, AppendFailure>>,
    Option<RoundWait>,
) {
    let mut outcomes: Vec<Option<Result<sluice_log::AppendReceipt, AppendFailure>>> =
        (0..groups.len()).map(|_| None).collect();
    // Every record in group order, so that each group's batch is a slice.
    let records: Vec<AppendRecord<'_>> = groups
        .entries
        .iter()
        .map(|&i| AppendRecord {
            partition_key: entries[i].key.as_bytes(),
            data: &entries[i].data,
            flags,
        })
        .collect();
    let mut logs = Vec::with_capacity(groups.len());
    let mut at = Vec::with_capacity(groups.len());
    let mut start = 0;
    let found = state.log().shards(
        groups
            .groups
            .iter()
            .map(|&(id, _)| sluice_log::ShardLogId(id)),
    );
    for (g, (&(_, end), log)) in groups.groups.iter().zip(found).enumerate() {
        let range = start..end;
        start = end;
        let Some(log) = log else {
            outcomes[g] = Some(Err(AppendFailure::StreamGone));
            continue;
        };
        logs.push((log, range));
        at.push(g);
    }
    let pairs: Vec<(&sluice_log::ShardLog, &[AppendRecord<'_>])> = logs
        .iter()
        .map(|(log, range)| (&**log, &records[range.clone()]))
        .collect();
    let (results, unsynced) = state.log().append_many_unsynced(&pairs);
    drop(pairs);
    let round = unsynced.map(|unsynced| RoundWait {
        unsynced,
        groups: Groups::default(),
        appends: at
            .iter()
            .zip(&results)
            .map(|(&g, result)| (g, result.as_ref().ok().copied()))
            .collect(),
    });
    for ((g, result), (log, _)) in at.into_iter().zip(results).zip(&logs) {
        outcomes[g] = Some(match result {
            Ok(receipt) => {
                if round.is_none() {
                    state.health.append_succeeded();
                }
                Ok(receipt)
            }
            Err(sluice_log::AppendError::Deleted) => Err(AppendFailure::StreamGone),
            Err(sluice_log::AppendError::Closed { .. }) => Err(AppendFailure::Closed),
            Err(sluice_log::AppendError::Quarantined(damage)) => Err(AppendFailure::Quarantined {
                from: damage.first_sequence(),
                until: damage.resume_sequence(),
            }),
            Err(e) => {
                state.health.append_failed(log.id().0, &e);
                Err(AppendFailure::Internal)
            }
        });
    }
    let outcomes = outcomes
        .into_iter()
        .map(|o| o.unwrap_or(Err(AppendFailure::Internal)))
        .collect();
    (outcomes, round)
}

/// The appends of a put that still wait for their group-commit rounds
/// (one per routing attempt): until then, its `Ok` results are provisional.
#[derive(Debug, Default)]
#[must_use = "a put is not durable until waited for"]
pub(crate) struct PutDurability {
    rounds: Vec<RoundWait>,
}

/// One attempt's appends: its groups, and per append the group and its
/// receipt if it reached the journal.
#[derive(Debug)]
pub(super) struct RoundWait {
    unsynced: sluice_log::Unsynced,
    groups: Groups,
    appends: Vec<(usize, Option<sluice_log::AppendReceipt>)>,
}

pub(super) type AppendResult = Result<sluice_log::AppendReceipt, sluice_log::AppendError>;

impl PutDurability {
    /// Awaits the rounds (no thread waits) and settles `outcome`.
    pub(crate) async fn wait(self, state: &Engine, outcome: &mut PutOutcome) {
        for round in self.rounds {
            let mut results = provisional(&round.appends);
            round.unsynced.wait_async(&mut results).await;
            settle_put(state, &round.groups, &round.appends, results, outcome);
        }
    }
}

/// The appends' results before their round, for the log to settle.
pub(super) fn provisional(
    appends: &[(usize, Option<sluice_log::AppendReceipt>)],
) -> Vec<AppendResult> {
    appends
        .iter()
        .map(|a| a.1.ok_or(sluice_log::AppendError::ShutDown))
        .collect()
}

/// An append whose round failed fails its entries (InternalFailure).
pub(super) fn settle_put(
    state: &Engine,
    groups: &Groups,
    appends: &[(usize, Option<sluice_log::AppendReceipt>)],
    results: Vec<AppendResult>,
    outcome: &mut PutOutcome,
) {
    for (&(g, before), after) in appends.iter().zip(results) {
        match (before, after) {
            (Some(_), Ok(_)) => state.health.append_succeeded(),
            (Some(_), Err(e)) => {
                state.health.append_failed(groups.log_id(g), &e);
                outcome.ok_bytes -= groups.bytes.get(g).copied().unwrap_or(0);
                for &i in groups.entries(g) {
                    outcome.results[i] = Err(PutFailure::Internal);
                }
            }
            // Failed before the journal: counted when it happened.
            (None, _) => {}
        }
    }
    outcome.failed = outcome.results.iter().filter(|r| r.is_err()).count();
}
