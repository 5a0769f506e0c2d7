"""boto3 against a server with AWS's per-shard limits (the default `aws`
profile): the exact exception and wording, and boto3's own retries recover."""
import pytest
from botocore.exceptions import ClientError

from conftest import client as conftest_client
from conftest import sluice

SHARD0 = "shardId-000000000000"
THROTTLED = "ProvisionedThroughputExceededException"


@pytest.fixture(scope="module")
def limited():
    with sluice() as (_, endpoint):
        yield endpoint


def client(endpoint, **retries):
    # No retries unless asked for (botocore's max_attempts counts retries).
    return conftest_client(endpoint, retries or {"total_max_attempts": 1})


def test_a_batch_over_a_shards_megabyte_fails_entry_by_entry(limited):
    kinesis = client(limited)
    kinesis.create_stream(StreamName="bytes", ShardCount=1)
    # 300 records of 4 KiB (+ a 1-byte key) in one request: what fits in the
    # shard's 1 MiB goes, in order; the rest is throttled, whatever the timing.
    records = [{"Data": b"x" * 4096, "PartitionKey": "k"} for _ in range(300)]
    out = kinesis.put_records(StreamName="bytes", Records=records)
    assert out["FailedRecordCount"] == 300 - (1 << 20) // 4097
    ok = [r for r in out["Records"] if "SequenceNumber" in r]
    failed = [r for r in out["Records"] if "ErrorCode" in r]
    assert out["Records"][: len(ok)] == ok, "the admitted entries come first"
    assert {r["ErrorCode"] for r in failed} == {THROTTLED}
    assert failed[0]["ErrorMessage"] == (
        f"Rate exceeded for shard {SHARD0} in stream bytes under account 000000000000."
    )
    # A single PutRecord that does not fit is refused whole...
    with pytest.raises(ClientError) as e:
        kinesis.put_record(StreamName="bytes", Data=b"y" * (900 << 10), PartitionKey="k")
    assert e.value.response["Error"]["Code"] == THROTTLED
    # ...and boto3's standard retries (backoff) get it through once the
    # shard's second has refilled.
    retrying = client(limited, mode="standard", max_attempts=10)
    out = retrying.put_record(StreamName="bytes", Data=b"y" * (900 << 10), PartitionKey="k")
    assert out["ShardId"] == SHARD0
    assert out["ResponseMetadata"]["RetryAttempts"] >= 1


def test_reads_are_limited_per_shard(limited):
    kinesis = client(limited)
    kinesis.create_stream(StreamName="reads", ShardCount=1)
    kinesis.put_record(StreamName="reads", Data=b"r", PartitionKey="k")
    it = kinesis.get_shard_iterator(StreamName="reads", ShardId=SHARD0, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    # 5 GetRecords a second: 20 calls in a row cannot all go.
    outcomes = []
    for _ in range(20):
        try:
            kinesis.get_records(ShardIterator=it)
            outcomes.append("ok")
        except ClientError as e:
            outcomes.append(e.response["Error"]["Code"])
    assert outcomes[:5] == ["ok"] * 5
    assert THROTTLED in outcomes
    # GetShardIterator: 5 a second per shard.
    codes = set()
    for _ in range(20):
        try:
            kinesis.get_shard_iterator(StreamName="reads", ShardId=SHARD0, ShardIteratorType="LATEST")
        except ClientError as e:
            codes.add(e.response["Error"]["Code"])
    assert codes == {THROTTLED}
    # boto3's retries recover from a throttled GetRecords.
    retrying = client(limited, mode="standard", max_attempts=10)
    assert retrying.get_records(ShardIterator=it)["Records"][0]["Data"] == b"r"


def test_control_plane_rates(limited):
    kinesis = client(limited)
    kinesis.create_stream(StreamName="described", ShardCount=1)
    # DescribeStreamSummary: 20 a second per account.
    errors = []
    for _ in range(30):
        try:
            kinesis.describe_stream_summary(StreamName="described")
        except ClientError as e:
            errors.append((e.response["Error"]["Code"], e.response["Error"]["Message"]))
    assert errors, "30 calls in a row cannot all go"
    assert set(errors) == {("LimitExceededException", "Rate exceeded for stream described under account 000000000000.")}
    # boto3 treats LimitExceededException as throttling and backs off.
    retrying = client(limited, mode="standard", max_attempts=10)
    summary = retrying.describe_stream_summary(StreamName="described")["StreamDescriptionSummary"]
    assert summary["StreamName"] == "described"


@pytest.fixture(scope="module")
def frozen():
    """AWS's limits, with the virtual clock: time moves only when a test says."""
    import json
    import urllib.request

    with sluice("--test-controls", "--stream-creating-ms", "60000") as (_, endpoint):
        def advance(ms):
            body = json.dumps({"advanceMs": ms}).encode()
            req = urllib.request.Request(
                endpoint + "/_sluice/clock", body, method="POST",
                headers={"Content-Type": "application/json"},
            )
            urllib.request.urlopen(req).read()

        req = urllib.request.Request(
            endpoint + "/_sluice/clock", b'{"freeze": true}', method="POST",
            headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(req).read()
        yield endpoint, advance


def test_records_per_second_the_ten_mib_read_and_the_creating_limit(frozen):
    endpoint, advance = frozen
    kinesis = client(endpoint)
    for i in range(5):
        kinesis.create_stream(StreamName=f"c{i}", ShardCount=1)
    advance(1_000)
    with pytest.raises(ClientError) as e:
        kinesis.create_stream(StreamName="c5", ShardCount=1)
    assert e.value.response["Error"]["Code"] == "LimitExceededException"
    assert "5 streams in the CREATING state" in e.value.response["Error"]["Message"]
    advance(60_000)
    # 1,000 records a second per shard: the third batch of 500 is refused.
    tiny = [{"Data": b"x", "PartitionKey": "k"} for _ in range(500)]
    failed = [kinesis.put_records(StreamName="c0", Records=tiny)["FailedRecordCount"] for _ in range(3)]
    assert failed == [0, 0, 500]
    # A full 10 MiB GetRecords answer: the next 5 seconds are refused.
    big = [{"Data": b"y" * (60 << 10), "PartitionKey": "k"} for _ in range(16)]
    for _ in range(12):
        advance(1_000)
        assert kinesis.put_records(StreamName="c1", Records=big)["FailedRecordCount"] == 0
    advance(1_000)
    it = kinesis.get_shard_iterator(StreamName="c1", ShardId=SHARD0, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    got = kinesis.get_records(ShardIterator=it)
    assert sum(len(r["Data"]) for r in got["Records"]) > 9 << 20
    advance(4_999)
    with pytest.raises(ClientError) as e:
        kinesis.get_records(ShardIterator=got["NextShardIterator"])
    assert e.value.response["Error"]["Code"] == THROTTLED
    advance(1)
    kinesis.get_records(ShardIterator=got["NextShardIterator"])


def test_daily_resharding_and_mode_switches(frozen):
    endpoint, advance = frozen
    kinesis = client(endpoint)
    kinesis.create_stream(StreamName="daily", ShardCount=1)
    advance(61_000)
    for i in range(10):
        kinesis.update_shard_count(StreamName="daily", TargetShardCount=2 if i % 2 == 0 else 1, ScalingType="UNIFORM_SCALING")
        advance(1_000)
    with pytest.raises(ClientError) as e:
        kinesis.update_shard_count(StreamName="daily", TargetShardCount=2, ScalingType="UNIFORM_SCALING")
    assert e.value.response["Error"]["Code"] == "LimitExceededException"
    arn = kinesis.describe_stream_summary(StreamName="daily")["StreamDescriptionSummary"]["StreamARN"]
    kinesis.update_stream_mode(StreamARN=arn, StreamModeDetails={"StreamMode": "ON_DEMAND"})
    advance(1_000)
    kinesis.update_stream_mode(StreamARN=arn, StreamModeDetails={"StreamMode": "PROVISIONED"})
    advance(1_000)
    with pytest.raises(ClientError) as e:
        kinesis.update_stream_mode(StreamARN=arn, StreamModeDetails={"StreamMode": "ON_DEMAND"})
    assert e.value.response["Error"]["Code"] == "LimitExceededException"
    # A day later both are allowed again.
    advance(24 * 3600 * 1000)
    kinesis.update_stream_mode(StreamARN=arn, StreamModeDetails={"StreamMode": "ON_DEMAND"})
