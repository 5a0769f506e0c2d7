"""boto3: enhanced fan-out. Registered consumers, and SubscribeToShard's event
stream over HTTP/1.1 (chunked), as boto3 uses it."""
import re
import threading

import pytest
from botocore.exceptions import ClientError
from conftest import client, sluice

SHARD0 = "shardId-000000000000"


def error_of(excinfo):
    e = excinfo.value.response["Error"]
    return e["Code"], e["Message"]


def stream_arn(kinesis, stream):
    return kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamARN"]


def register(kinesis, stream, name):
    return kinesis.register_stream_consumer(StreamARN=stream_arn(kinesis, stream), ConsumerName=name)["Consumer"]


def put(kinesis, stream, *values, key="k"):
    """PutRecord each value to shard 0; returns the sequence numbers."""
    return [
        kinesis.put_record(StreamName=stream, Data=v.encode(), PartitionKey=key, ExplicitHashKey="0")["SequenceNumber"]
        for v in values
    ]


def subscribe(kinesis, consumer, shard=SHARD0, **position):
    r = kinesis.subscribe_to_shard(ConsumerARN=consumer["ConsumerARN"], ShardId=shard, StartingPosition=position)
    return iter(r["EventStream"])


def records_until(events, n):
    """Reads events until n records have come; returns them and the events."""
    records, seen = [], []
    while len(records) < n:
        event = next(events)["SubscribeToShardEvent"]
        seen.append(event)
        records.extend(event["Records"])
    assert len(records) == n, "no more records than were written"
    return records, seen


def data(records):
    return [r["Data"].decode() for r in records]


def test_consumer_lifecycle(kinesis, stream):
    arn = stream_arn(kinesis, stream)
    consumer = register(kinesis, stream, "app")
    assert consumer["ConsumerStatus"] == "ACTIVE"
    assert re.fullmatch(rf"arn:aws:kinesis:us-east-1:\d{{12}}:stream/{stream}/consumer/app:\d+", consumer["ConsumerARN"])
    by_arn = kinesis.describe_stream_consumer(ConsumerARN=consumer["ConsumerARN"])["ConsumerDescription"]
    by_name = kinesis.describe_stream_consumer(StreamARN=arn, ConsumerName="app")["ConsumerDescription"]
    assert by_arn == by_name
    assert by_arn["StreamARN"] == arn
    assert by_arn["ConsumerCreationTimestamp"] == consumer["ConsumerCreationTimestamp"]
    summary = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
    assert summary["ConsumerCount"] == 1

    with pytest.raises(ClientError) as e:
        register(kinesis, stream, "app")
    assert error_of(e)[0] == "ResourceInUseException"

    register(kinesis, stream, "b")
    register(kinesis, stream, "c")
    names, token = [], None
    while True:
        page = kinesis.list_stream_consumers(StreamARN=arn, MaxResults=2, **({"NextToken": token} if token else {}))
        assert len(page["Consumers"]) <= 2
        names += [c["ConsumerName"] for c in page["Consumers"]]
        token = page.get("NextToken")
        if not token:
            break
    assert names == ["app", "b", "c"]

    kinesis.deregister_stream_consumer(ConsumerARN=consumer["ConsumerARN"])
    kinesis.deregister_stream_consumer(StreamARN=arn, ConsumerName="b")
    for kwargs in ({"ConsumerARN": consumer["ConsumerARN"]}, {"StreamARN": arn, "ConsumerName": "b"}):
        with pytest.raises(ClientError) as e:
            kinesis.describe_stream_consumer(**kwargs)
        assert error_of(e)[0] == "ResourceNotFoundException"
        with pytest.raises(ClientError) as e:
            kinesis.deregister_stream_consumer(**kwargs)
        assert error_of(e)[0] == "ResourceNotFoundException"
    assert [c["ConsumerName"] for c in kinesis.list_stream_consumers(StreamARN=arn)["Consumers"]] == ["c"]

    # A consumer registered again under the same name is another consumer;
    # the old ARN names nothing (unless it is the same second).
    with pytest.raises(ClientError) as e:
        kinesis.describe_stream_consumer(StreamARN=arn)
    assert error_of(e)[0] == "InvalidArgumentException"
    with pytest.raises(ClientError) as e:
        kinesis.describe_stream_consumer(ConsumerARN=arn + "/consumer/app:1")
    assert error_of(e)[0] == "ResourceNotFoundException"


def test_twenty_consumers_per_stream(kinesis, stream):
    for i in range(20):
        register(kinesis, stream, f"c{i}")
    with pytest.raises(ClientError) as e:
        register(kinesis, stream, "one-too-many")
    assert error_of(e)[0] == "LimitExceededException"


def test_delete_stream_with_consumers(kinesis, stream):
    consumer = register(kinesis, stream, "app")
    with pytest.raises(ClientError) as e:
        kinesis.delete_stream(StreamName=stream)
    assert error_of(e)[0] == "ResourceInUseException"
    kinesis.delete_stream(StreamName=stream, EnforceConsumerDeletion=True)
    with pytest.raises(ClientError) as e:
        kinesis.describe_stream_consumer(ConsumerARN=consumer["ConsumerARN"])
    assert error_of(e)[0] == "ResourceNotFoundException"


def test_backlog_then_live_records(kinesis, stream):
    put(kinesis, stream, "r0", "r1", "r2")
    events = subscribe(kinesis, register(kinesis, stream, "app"), Type="TRIM_HORIZON")
    first, _ = records_until(events, 3)
    assert data(first) == ["r0", "r1", "r2"]
    # Live records are pushed as they are written.
    writer = threading.Thread(target=put, args=(kinesis, stream, "r3", "r4"))
    writer.start()
    live, seen = records_until(events, 2)
    writer.join()
    assert data(live) == ["r3", "r4"]
    last = seen[-1]
    assert last["MillisBehindLatest"] == 0
    assert "ChildShards" not in last
    assert int(last["ContinuationSequenceNumber"]) >= int(live[-1]["SequenceNumber"])


def test_starting_positions(kinesis, stream):
    seqs = put(kinesis, stream, *(f"r{i}" for i in range(5)))
    got = kinesis.get_records(
        ShardIterator=kinesis.get_shard_iterator(StreamName=stream, ShardId=SHARD0, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    )["Records"]
    cases = [
        ({"Type": "AT_SEQUENCE_NUMBER", "SequenceNumber": seqs[2]}, ["r2", "r3", "r4"]),
        ({"Type": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": seqs[2]}, ["r3", "r4"]),
        ({"Type": "AT_TIMESTAMP", "Timestamp": got[3]["ApproximateArrivalTimestamp"]},
         [r["Data"].decode() for r in got if r["ApproximateArrivalTimestamp"] >= got[3]["ApproximateArrivalTimestamp"]]),
        ({"Type": "TRIM_HORIZON"}, [f"r{i}" for i in range(5)]),
    ]
    for i, (position, expected) in enumerate(cases):
        # One consumer each: a second call for the same consumer and shard
        # within 5 s is refused.
        events = subscribe(kinesis, register(kinesis, stream, f"c{i}"), **position)
        records, _ = records_until(events, len(expected))
        assert data(records) == expected, position

    # LATEST: the first event comes at once, empty; then only new records.
    events = subscribe(kinesis, register(kinesis, stream, "latest"), Type="LATEST")
    first = next(events)["SubscribeToShardEvent"]
    assert first["Records"] == []
    put(kinesis, stream, "new")
    records, _ = records_until(events, 1)
    assert data(records) == ["new"]

    # Resuming AFTER a ContinuationSequenceNumber loses and repeats nothing,
    # whether it came with records or not.
    continuation = first["ContinuationSequenceNumber"]
    events = subscribe(kinesis, register(kinesis, stream, "resume"),
                       Type="AFTER_SEQUENCE_NUMBER", SequenceNumber=continuation)
    records, seen = records_until(events, 1)
    assert data(records) == ["new"]
    put(kinesis, stream, "newer")
    events = subscribe(kinesis, register(kinesis, stream, "resume-2"),
                       Type="AFTER_SEQUENCE_NUMBER", SequenceNumber=seen[-1]["ContinuationSequenceNumber"])
    records, _ = records_until(events, 1)
    assert data(records) == ["newer"]


def test_subscribe_at_the_shards_starting_sequence_number_when_empty(kinesis, stream):
    # AWS: valid before any record is in the shard (issue #15).
    shard = kinesis.list_shards(StreamName=stream)["Shards"][0]
    assert shard["ShardId"] == SHARD0
    start = shard["SequenceNumberRange"]["StartingSequenceNumber"]
    events = subscribe(kinesis, register(kinesis, stream, "at-start"), Type="AT_SEQUENCE_NUMBER", SequenceNumber=start)
    put(kinesis, stream, "first")
    records, _ = records_until(events, 1)
    assert data(records) == ["first"]


def test_subscribe_errors(kinesis, stream):
    consumer = register(kinesis, stream, "app")
    subscribe(kinesis, consumer, Type="LATEST")
    with pytest.raises(ClientError) as e:
        subscribe(kinesis, consumer, Type="LATEST")
    code, message = error_of(e)
    assert code == "ResourceInUseException"
    assert message.startswith("Another active subscription exists for this consumer: ")
    assert message.endswith(f":{stream}:{SHARD0}:app")
    # Another shard of the same consumer is another subscription.
    subscribe(kinesis, consumer, shard="shardId-000000000001", Type="LATEST")

    with pytest.raises(ClientError) as e:
        subscribe(kinesis, consumer, shard="shardId-000000000009", Type="LATEST")
    assert error_of(e)[0] == "ResourceNotFoundException"
    gone = dict(consumer, ConsumerARN=consumer["ConsumerARN"].replace("/consumer/app:", "/consumer/nobody:"))
    with pytest.raises(ClientError) as e:
        subscribe(kinesis, gone, Type="LATEST")
    assert error_of(e)[0] == "ResourceNotFoundException"
    other = register(kinesis, stream, "other")
    with pytest.raises(ClientError) as e:
        subscribe(kinesis, other, Type="AT_SEQUENCE_NUMBER")
    assert error_of(e)[0] == "InvalidArgumentException"
    with pytest.raises(ClientError) as e:
        subscribe(kinesis, other, Type="AT_SEQUENCE_NUMBER", SequenceNumber="1234")
    assert error_of(e)[0] == "InvalidArgumentException"


def test_deregistering_ends_subscriptions(kinesis, stream):
    consumer = register(kinesis, stream, "app")
    events = subscribe(kinesis, consumer, Type="LATEST")
    next(events)
    kinesis.deregister_stream_consumer(ConsumerARN=consumer["ConsumerARN"])
    assert list(events) == [], "the event stream ends"


def test_split_during_a_subscription(kinesis):
    stream = "fanout-split"
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    consumer = register(kinesis, stream, "app")
    put(kinesis, stream, "before-0", "before-1")
    events = subscribe(kinesis, consumer, Type="TRIM_HORIZON")
    records, _ = records_until(events, 2)
    assert data(records) == ["before-0", "before-1"]
    kinesis.split_shard(StreamName=stream, ShardToSplit=SHARD0, NewStartingHashKey=str(2**127))
    put(kinesis, stream, "after", key="k")
    rest = [e["SubscribeToShardEvent"] for e in events]
    assert rest, "the subscription ends after the shard does"
    end = rest[-1]
    assert "ContinuationSequenceNumber" not in end, "the end of a shard has no continuation"
    assert [r for e in rest for r in e["Records"]] == []
    children = end["ChildShards"]
    assert sorted(c["ShardId"] for c in children) == ["shardId-000000000001", "shardId-000000000002"]
    assert all(c["ParentShards"] == [SHARD0] for c in children)
    # The consumer moves on to the child that holds hash key 0.
    events = subscribe(kinesis, consumer, shard="shardId-000000000001", Type="TRIM_HORIZON")
    records, _ = records_until(events, 1)
    assert data(records) == ["after"]
    kinesis.delete_stream(StreamName=stream, EnforceConsumerDeletion=True)


def test_a_stalled_subscriber_does_not_grow_server_memory():
    """A subscriber that reads nothing while 240 MiB are written: the server
    holds back (flow control) instead of buffering the records. Limits are off,
    so that fan-out's 2 MiB/s does not hold it back first."""
    with sluice("--limits", "off") as (proc, endpoint):
        stalled_subscriber(proc, client(endpoint))


def stalled_subscriber(proc, kinesis):
    stream = "stalled"
    kinesis.create_stream(StreamName=stream, ShardCount=1)

    def rss_mib():
        with open(f"/proc/{proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")

    consumer = register(kinesis, stream, "slow")
    stream_of_events = kinesis.subscribe_to_shard(
        ConsumerARN=consumer["ConsumerARN"], ShardId=SHARD0, StartingPosition={"Type": "TRIM_HORIZON"}
    )["EventStream"]
    events = iter(stream_of_events)
    payload = b"x" * (20 << 10)
    entries = [{"Data": payload, "PartitionKey": "k", "ExplicitHashKey": "0"} for _ in range(400)]
    # A first 80 MiB warms the allocator and the buffers up; then memory must
    # stay flat while 160 MiB more go unread. (Without backpressure the
    # server buffered every event: 253 MiB for 160 MiB.)
    for _ in range(10):
        assert kinesis.put_records(StreamName=stream, Records=entries)["FailedRecordCount"] == 0
    before = rss_mib()
    for _ in range(20):
        assert kinesis.put_records(StreamName=stream, Records=entries)["FailedRecordCount"] == 0
    grown = rss_mib() - before
    assert grown < 48, f"server RSS grew {grown:.0f} MiB for 160 MiB a stalled subscriber did not read"
    # The subscriber can still read what it fell behind on.
    records = []
    while not records:
        records = next(events)["SubscribeToShardEvent"]["Records"]
    assert records[0]["Data"] == payload
    stream_of_events.close()


def test_consumer_tags_and_policies(kinesis, stream):
    arn = stream_arn(kinesis, stream)
    consumer = kinesis.register_stream_consumer(StreamARN=arn, ConsumerName="tagged", Tags={"team": "a"})["Consumer"]
    carn = consumer["ConsumerARN"]
    assert kinesis.list_tags_for_resource(ResourceARN=carn)["Tags"] == [{"Key": "team", "Value": "a"}]
    kinesis.tag_resource(ResourceARN=carn, Tags={"env": "ci"})
    kinesis.untag_resource(ResourceARN=carn, TagKeys=["team"])
    assert kinesis.list_tags_for_resource(ResourceARN=carn)["Tags"] == [{"Key": "env", "Value": "ci"}]
    assert kinesis.list_tags_for_resource(ResourceARN=arn)["Tags"] == [], "the stream's tags are its own"
    policy = '{"Version": "2012-10-17", "Statement": []}'
    kinesis.put_resource_policy(ResourceARN=carn, Policy=policy)
    assert kinesis.get_resource_policy(ResourceARN=carn)["Policy"] == policy
    kinesis.deregister_stream_consumer(ConsumerARN=carn)
    with pytest.raises(ClientError) as e:
        kinesis.list_tags_for_resource(ResourceARN=carn)
    assert error_of(e)[0] == "ResourceNotFoundException"
