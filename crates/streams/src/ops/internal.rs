//! Streams that services built on the engine keep for themselves: Firehose
//! keeps a delivery stream's Direct PUT records in one, so that a record is
//! in the log (fsynced) before PutRecord answers, and delivery reads it back
//! from there after a restart.
//!
//! They live in an internal scope ([`Scope::internal`]) that no request can
//! name, have one shard (records stay in the order they were acknowledged;
//! the reader keeps one position), appear nowhere a client looks, and are
//! not counted against or limited by Kinesis' quotas (the service applies its
//! own). They keep records for the default 24 hours, as Firehose keeps
//! undelivered data for 24 hours.

use super::*;

/// Creates the internal stream `name` in `scope` (which must be internal).
/// Returns its creation time, which tells it apart from an older stream of
/// the same name.
pub fn create_internal(engine: &Engine, scope: &Scope, name: &str) -> Result<u64, AwsError> {
    assert!(
        scope.is_internal(),
        "internal streams live in internal scopes"
    );
    let ctx = &Ctx {
        state: engine,
        scope: scope.clone(),
    };
    let create = CreateStream {
        scope: scope.clone(),
        name: name.to_owned(),
        shard_count: 1,
        mode: StreamMode::Provisioned,
        max_record_size_kib: 1024,
        tags: BTreeMap::new(),
        creating_ms: 0,
        warm_throughput_mibps: None,
    };
    ctx.change(|_, _| Ok(Command::CreateStream(create)))?;
    let catalog = engine.catalog();
    catalog
        .stream(scope, name)
        .map(|s| s.created_ms)
        .ok_or_else(|| internal("an internal stream vanished as it was created"))
}

/// Deletes the internal stream `name` and its records at once (no
/// DELETING period: nobody reads it any more). Nothing to delete is fine.
pub fn delete_internal(engine: &Engine, scope: &Scope, name: &str) -> Result<(), AwsError> {
    assert!(
        scope.is_internal(),
        "internal streams live in internal scopes"
    );
    let ctx = &Ctx {
        state: engine,
        scope: scope.clone(),
    };
    engine
        .change_with(
            |catalog, _| {
                Ok::<_, AwsError>(catalog.stream(scope, name).map(|_| Command::DeleteStream {
                    scope: scope.clone(),
                    name: name.to_owned(),
                    deleting_ms: 0,
                }))
            },
            |_| {},
        )
        .map_err(|e| ctx.refused(e))?;
    Ok(())
}

/// The internal streams of every scope: (scope, name, created_ms).
pub fn internal_streams(engine: &Engine) -> Vec<(Scope, String, u64)> {
    engine
        .catalog()
        .streams()
        .filter(|s| s.region.contains('.'))
        .map(|s| (s.scope(), s.name.clone(), s.created_ms))
        .collect()
}

/// The one shard log of the internal stream `name`, with the stream's
/// creation time; `None` if there is no such stream.
pub fn internal_log(
    engine: &Engine,
    scope: &Scope,
    name: &str,
) -> Option<(std::sync::Arc<sluice_log::ShardLog>, u64)> {
    let catalog = engine.catalog();
    let stream = catalog.stream(scope, name)?;
    let shard = stream.shard(0)?;
    Some((engine.shard_log(shard.log_id)?, stream.created_ms))
}

/// Appends `records` to the internal stream `name`, up to the durable
/// point: await [`PendingPut::finish`] for a PutRecords answer (a sequence
/// number per record, or why that record failed). No Kinesis limit applies.
pub fn begin_internal_put(
    engine: &Engine,
    scope: &Scope,
    name: &str,
    records: &[&[u8]],
) -> Result<PendingPut, AwsError> {
    assert!(
        scope.is_internal(),
        "internal streams live in internal scopes"
    );
    let ctx = &Ctx {
        state: engine,
        scope: scope.clone(),
    };
    let entries: Vec<PutEntry<'_>> = records
        .iter()
        .map(|data| PutEntry {
            key: "",
            data: (*data).into(),
            hash: 0,
        })
        .collect();
    let (outcome, durability) = put_entries_unsynced(ctx, name, &entries)?;
    Ok(PendingPut::new(
        scope.clone(),
        name.to_owned(),
        PutShape::Records,
        outcome,
        durability,
    ))
}
