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
