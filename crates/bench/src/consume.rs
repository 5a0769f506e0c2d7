//! The consumers of a run: read-back from TRIM_HORIZON, GetRecords polling
//! and SubscribeToShard (put -> seen latency from the stamps in the records).

use super::*;

/// Reads each shard from TRIM_HORIZON until it is caught up.
pub(super) async fn read_back(
    client: &mut Client,
    stream: &str,
    shards: &[String],
    cbor: bool,
    tally: &mut Tally,
) -> anyhow::Result<ReadBack> {
    let started = Instant::now();
    let (mut records, mut bytes, mut requests) = (0u64, 0u64, 0u64);
    for shard in shards {
        let mut iterator =
            iterator_at(client, stream, shard, k::ShardIteratorType::TrimHorizon).await?;
        loop {
            // In the producers' protocol: AWS CBOR answers carry the data as
            // it was sent, with no base64.
            let input = k::GetRecordsInput {
                shard_iterator: iterator.clone(),
                limit: Some(10_000),
                ..Default::default()
            };
            let reply = client
                .call_as(
                    "GetRecords",
                    encode_request(cbor, &input),
                    content_type(cbor),
                )
                .await?;
            requests += 1;
            if let Some(name) = reply.error_name() {
                tally.error("GetRecords", &name, 1);
                if name == "ProvisionedThroughputExceededException" {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                bail!("GetRecords: {name}");
            }
            let out: RecordsPage = decode_answer(cbor, &reply.body)
                .context("GetRecords: an answer that does not parse")?;
            records += out.records.len() as u64;
            bytes += out.records.iter().map(|r| r.data.len() as u64).sum::<u64>();
            match out.next_shard_iterator {
                Some(next) if !(out.records.is_empty() && out.millis_behind_latest == 0) => {
                    iterator = next
                }
                _ => break,
            }
        }
    }
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    Ok(ReadBack {
        records,
        payload_bytes: bytes,
        elapsed_s: secs,
        records_per_s: records as f64 / secs,
        payload_mb_per_s: bytes as f64 / secs / 1e6,
        requests,
    })
}

/// How long consumers keep reading after the producers stop, at most.
pub(super) const DRAIN_MAX: Duration = Duration::from_secs(10);

pub(super) async fn poll(
    mut client: Client,
    mut iterator: String,
    live: Arc<Live>,
    interval: Duration,
) -> (Tally, Histogram<u64>, u64) {
    let mut tally = Tally::new();
    let mut latency = histogram();
    let mut consumed = 0u64;
    let mut drain_deadline = None;
    loop {
        let body = json_body(&k::GetRecordsInput {
            shard_iterator: iterator.clone(),
            ..Default::default()
        });
        let reply = match client.call("GetRecords", body).await {
            Ok(r) => r,
            Err(_) => {
                tally.error("GetRecords", "ConnectionError", 1);
                break;
            }
        };
        tally.requests += 1;
        let seen = now_us();
        let mut caught_up = false;
        if let Some(name) = reply.error_name() {
            tally.error("GetRecords", &name, 1);
            live.errors.fetch_add(1, Ordering::Relaxed);
            if name != "ProvisionedThroughputExceededException" {
                break;
            }
            // Throttled (AWS: 5 calls a second per shard): back off.
            tokio::time::sleep(interval.max(Duration::from_millis(200))).await;
        } else {
            let Ok(out) = serde_json::from_slice::<RecordsPage>(&reply.body) else {
                tally.error("GetRecords", "UnreadableAnswer", 1);
                break;
            };
            for r in &out.records {
                // The stamp is in the first 12 bytes (16 base64 characters).
                if let Some(sent) = stamp_of(&r.data.head(STAMP_LEN)) {
                    let _ = latency.record(seen.saturating_sub(sent).max(1));
                }
            }
            consumed += out.records.len() as u64;
            live.consumed
                .fetch_add(out.records.len() as u64, Ordering::Relaxed);
            caught_up = out.records.is_empty() && out.millis_behind_latest == 0;
            match out.next_shard_iterator {
                Some(next) => iterator = next,
                None => break,
            }
        }
        if drained(&live, &mut drain_deadline, caught_up) {
            break;
        }
        if caught_up && !interval.is_zero() {
            tokio::time::sleep(interval).await;
        }
    }
    (tally, latency, consumed)
}

/// Registers this run's consumer and waits until it is ACTIVE; its ARN.
pub(super) async fn register_consumer(client: &mut Client, stream: &str) -> anyhow::Result<String> {
    let summary: k::DescribeStreamSummaryOutput = call_ok(
        client,
        "DescribeStreamSummary",
        &k::DescribeStreamSummaryInput {
            stream_name: Some(stream.to_owned()),
            ..Default::default()
        },
    )
    .await?;
    let stream_arn = summary.stream_description_summary.stream_arn;
    let name = format!("sluice-bench-{}", std::process::id());
    let out: k::RegisterStreamConsumerOutput = call_ok(
        client,
        "RegisterStreamConsumer",
        &k::RegisterStreamConsumerInput {
            stream_arn,
            consumer_name: name,
            ..Default::default()
        },
    )
    .await?;
    let arn = out.consumer.consumer_arn;
    for _ in 0..600 {
        let d: k::DescribeStreamConsumerOutput = call_ok(
            client,
            "DescribeStreamConsumer",
            &k::DescribeStreamConsumerInput {
                consumer_arn: Some(arn.clone()),
                ..Default::default()
            },
        )
        .await?;
        if d.consumer_description.consumer_status == k::ConsumerStatus::Active {
            return Ok(arn);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("consumer {arn} did not become ACTIVE within 60 s")
}

/// One shard's SubscribeToShard consumer: put -> event latency from the
/// stamps. `started` is notified once the first subscription answered.
pub(super) async fn subscribe(
    mut client: Client,
    consumer_arn: String,
    shard: String,
    live: Arc<Live>,
    started: Arc<tokio::sync::Notify>,
) -> (Tally, Histogram<u64>, u64) {
    use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
    use http_body_util::BodyExt;
    let mut tally = Tally::new();
    let mut latency = histogram();
    let mut consumed = 0u64;
    let mut drain_deadline = None;
    let mut position = k::StartingPosition {
        r#type: k::ShardIteratorType::Latest,
        ..Default::default()
    };
    'subscriptions: loop {
        let body = json_body(&k::SubscribeToShardInput {
            consumer_arn: consumer_arn.clone(),
            shard_id: shard.clone(),
            starting_position: position.clone(),
            ..Default::default()
        });
        let mut events = match client.call_streaming("SubscribeToShard", body).await {
            Ok(Ok(events)) => events,
            Ok(Err(reply)) => {
                let name = reply.error_name().unwrap_or_default();
                tally.error("SubscribeToShard", &name, 1);
                live.errors.fetch_add(1, Ordering::Relaxed);
                if name != "ResourceInUseException" && name != "LimitExceededException" {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(_) => {
                tally.error("SubscribeToShard", "ConnectionError", 1);
                break;
            }
        };
        tally.requests += 1;
        started.notify_one();
        let mut decoder = MessageFrameDecoder::new();
        let mut buffer = bytes::BytesMut::new();
        loop {
            // Decode what is buffered first; read more only when it is not a whole message.
            let message = match decoder.decode_frame(&mut buffer) {
                Ok(DecodedFrame::Complete(m)) => Some(m),
                Ok(DecodedFrame::Incomplete) => None,
                Err(_) => {
                    tally.error("SubscribeToShard", "MalformedEvent", 1);
                    break 'subscriptions;
                }
            };
            let Some(message) = message else {
                let frame = tokio::time::timeout(Duration::from_millis(500), events.frame()).await;
                match frame {
                    Ok(Some(Ok(frame))) => {
                        if let Ok(data) = frame.into_data() {
                            buffer.extend_from_slice(&data);
                        }
                    }
                    // The subscription ended (5 minutes): subscribe again.
                    Ok(None) => continue 'subscriptions,
                    Ok(Some(Err(_))) => {
                        tally.error("SubscribeToShard", "ConnectionError", 1);
                        break 'subscriptions;
                    }
                    Err(_) => {}
                }
                if drained(&live, &mut drain_deadline, true) {
                    break 'subscriptions;
                }
                continue;
            };
            let header = |name: &str| {
                message
                    .headers()
                    .iter()
                    .find(|h| h.name().as_str() == name)
                    .and_then(|h| h.value().as_string().ok())
                    .map(|v| v.as_str().to_owned())
                    .unwrap_or_default()
            };
            if header(":message-type") == "exception" {
                tally.error("SubscribeToShard", &header(":exception-type"), 1);
                live.errors.fetch_add(1, Ordering::Relaxed);
                break 'subscriptions;
            }
            if header(":event-type") != k::SUBSCRIBE_TO_SHARD_EVENT {
                continue;
            }
            let seen = now_us();
            let Ok(event) = serde_json::from_slice::<RecordsPage>(message.payload()) else {
                tally.error("SubscribeToShard", "UnreadableEvent", 1);
                break 'subscriptions;
            };
            for r in &event.records {
                if let Some(sent) = stamp_of(&r.data.head(STAMP_LEN)) {
                    let _ = latency.record(seen.saturating_sub(sent).max(1));
                }
            }
            consumed += event.records.len() as u64;
            live.consumed
                .fetch_add(event.records.len() as u64, Ordering::Relaxed);
            match event.continuation_sequence_number {
                Some(c) => {
                    position = k::StartingPosition {
                        r#type: k::ShardIteratorType::AfterSequenceNumber,
                        sequence_number: Some(c),
                        timestamp: None,
                    }
                }
                // The end of a closed shard.
                None => break 'subscriptions,
            }
            if drained(&live, &mut drain_deadline, event.millis_behind_latest == 0) {
                break 'subscriptions;
            }
        }
    }
    started.notify_one();
    (tally, latency, consumed)
}

/// Whether a consumer may stop: the producers are done and it caught up with
/// everything they wrote, or the drain took too long.
pub(super) fn drained(live: &Live, deadline: &mut Option<Instant>, caught_up: bool) -> bool {
    if !live.producers_done.load(Ordering::Acquire) {
        return false;
    }
    let deadline = *deadline.get_or_insert_with(|| Instant::now() + DRAIN_MAX);
    let all_seen = live.consumed.load(Ordering::Relaxed) >= live.records_ok.load(Ordering::Relaxed);
    (caught_up && all_seen) || Instant::now() > deadline
}
