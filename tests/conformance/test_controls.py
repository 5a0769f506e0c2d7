"""The test controls (`sluice serve --test-controls`): a virtual clock that
tests advance, fault injection, shard throttling and reset; driven over
plain HTTP, observed with boto3."""
import json
import time
import urllib.error
import urllib.request

import pytest
from botocore.exceptions import ClientError

from conftest import client, sluice

SHARD0 = "shardId-000000000000"


@pytest.fixture(scope="module")
def controlled():
    with sluice("--test-controls", "--limits", "off") as (_, endpoint):
        yield endpoint


def control(endpoint, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        endpoint + "/_sluice/" + path,
        data=data,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def code_of(excinfo):
    return excinfo.value.response["Error"]["Code"]


def test_the_virtual_clock_drives_expiry_and_retention(controlled):
    kinesis = client(controlled, {"total_max_attempts": 1})
    status, clock = control(controlled, "POST", "clock", {"freeze": True})
    assert status == 200 and clock["frozen"]
    kinesis.create_stream(StreamName="clocked", ShardCount=1)
    kinesis.put_record(StreamName="clocked", Data=b"old", PartitionKey="k")
    it = kinesis.get_shard_iterator(StreamName="clocked", ShardId=SHARD0, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    # The clock stands still: the record's time is the frozen time.
    record = kinesis.get_records(ShardIterator=it)["Records"][0]
    assert record["ApproximateArrivalTimestamp"].timestamp() * 1000 == pytest.approx(clock["nowMs"], abs=1)
    # Five minutes and a second later the iterator has expired.
    status, later = control(controlled, "POST", "clock", {"advanceMs": 301_000})
    assert later["nowMs"] == clock["nowMs"] + 301_000
    with pytest.raises(ClientError) as e:
        kinesis.get_records(ShardIterator=it)
    assert code_of(e) == "ExpiredIteratorException"
    # A day later the record has expired, at once.
    control(controlled, "POST", "clock", {"advanceMs": 24 * 3600 * 1000})
    it = kinesis.get_shard_iterator(StreamName="clocked", ShardId=SHARD0, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    assert kinesis.get_records(ShardIterator=it)["Records"] == []
    status, thawed = control(controlled, "POST", "clock", {"thaw": True})
    assert status == 200 and not thawed["frozen"]
    assert thawed["nowMs"] >= later["nowMs"], "time never goes back"
    # Only a frozen clock advances.
    status, body = control(controlled, "POST", "clock", {"advanceMs": 1})
    assert status == 400 and "freeze" in body["message"]


def test_injected_faults_and_latency(controlled):
    kinesis = client(controlled, {"total_max_attempts": 1})
    kinesis.create_stream(StreamName="faulty", ShardCount=1)
    kinesis.create_stream(StreamName="healthy", ShardCount=1)
    status, _ = control(controlled, "POST", "faults", {
        "operation": "PutRecord", "streamName": "faulty", "count": 2,
        "error": "ProvisionedThroughputExceededException", "message": "Rate exceeded (injected).",
    })
    assert status == 200
    kinesis.put_record(StreamName="healthy", Data=b"x", PartitionKey="k")
    for _ in range(2):
        with pytest.raises(ClientError) as e:
            kinesis.put_record(StreamName="faulty", Data=b"x", PartitionKey="k")
        assert code_of(e) == "ProvisionedThroughputExceededException"
        assert e.value.response["Error"]["Message"] == "Rate exceeded (injected)."
    kinesis.put_record(StreamName="faulty", Data=b"x", PartitionKey="k")
    # Latency alone: the call succeeds, no sooner than asked.
    control(controlled, "POST", "faults", {"operation": "ListStreams", "latencyMs": 300})
    started = time.monotonic()
    kinesis.list_streams()
    assert time.monotonic() - started >= 0.3
    # Bad controls are refused with a reason; DELETE clears what waits.
    assert control(controlled, "POST", "faults", {"operation": "NoSuchOp", "error": "InternalFailure"})[0] == 400
    assert control(controlled, "POST", "faults", {"operation": "PutRecord", "error": "NoSuchException"})[0] == 400
    control(controlled, "POST", "faults", {"operation": "DescribeStreamSummary", "error": "InternalFailure", "count": 5})
    assert control(controlled, "DELETE", "faults")[0] == 200
    kinesis.describe_stream_summary(StreamName="faulty")


def test_throttling_a_shard(controlled):
    kinesis = client(controlled, {"total_max_attempts": 1})
    kinesis.create_stream(StreamName="throttled", ShardCount=2)
    control(controlled, "POST", "clock", {"freeze": True})
    status, _ = control(controlled, "POST", "throttle", {"streamName": "throttled", "shardId": SHARD0, "forMs": 60_000})
    assert status == 200
    out = kinesis.put_records(StreamName="throttled", Records=[
        {"Data": b"a", "PartitionKey": "a", "ExplicitHashKey": "0"},
        {"Data": b"b", "PartitionKey": "b", "ExplicitHashKey": str(2**127)},
    ])
    assert out["FailedRecordCount"] == 1
    assert out["Records"][0]["ErrorCode"] == "ProvisionedThroughputExceededException"
    assert out["Records"][1]["ShardId"] == "shardId-000000000001"
    with pytest.raises(ClientError) as e:
        kinesis.get_shard_iterator(StreamName="throttled", ShardId=SHARD0, ShardIteratorType="LATEST")
    assert code_of(e) == "ProvisionedThroughputExceededException"
    control(controlled, "POST", "clock", {"advanceMs": 60_000})
    kinesis.put_record(StreamName="throttled", Data=b"a", PartitionKey="a", ExplicitHashKey="0")
    control(controlled, "POST", "clock", {"thaw": True})


def test_reset_drops_every_stream(controlled):
    kinesis = client(controlled, {"total_max_attempts": 1})
    kinesis.create_stream(StreamName="doomed", ShardCount=1)
    # A 12-digit access key acts as that account.
    other_account = client(controlled, {"total_max_attempts": 1}, access_key="111122223333")
    other_account.create_stream(StreamName="doomed-too", ShardCount=1)
    status, body = control(controlled, "POST", "reset")
    assert status == 200 and body["streamsDeleted"] >= 2
    assert kinesis.list_streams()["StreamNames"] == []
    assert other_account.list_streams()["StreamNames"] == []
    kinesis.create_stream(StreamName="doomed", ShardCount=1)


def test_controls_are_off_unless_asked_for(endpoint):
    status, _ = control(endpoint, "POST", "reset")
    assert status != 200


def test_controls_refuse_what_could_never_apply(controlled):
    kinesis = client(controlled, {"total_max_attempts": 1})
    # Filters the operation's requests cannot carry would never match.
    status, body = control(controlled, "POST", "faults", {"operation": "PutRecord", "shardId": SHARD0, "error": "InternalFailure"})
    assert status == 400 and "throttle" in body["message"]
    assert control(controlled, "POST", "faults", {"operation": "ListStreams", "streamName": "s", "error": "InternalFailure"})[0] == 400
    # One clock request says one thing; time never goes back; advances are bounded.
    assert control(controlled, "POST", "clock", {"freeze": True, "thaw": True})[0] == 400
    assert control(controlled, "POST", "clock", {"freeze": True, "nowMs": 1})[0] == 400
    control(controlled, "POST", "clock", {"freeze": True})
    assert control(controlled, "POST", "clock", {"advanceMs": 10**17})[0] == 400
    control(controlled, "POST", "clock", {"thaw": True})
    # A reset drops waiting faults and shard throttles too.
    kinesis.create_stream(StreamName="reset-me", ShardCount=1)
    arn = kinesis.describe_stream_summary(StreamName="reset-me")["StreamDescriptionSummary"]["StreamARN"]
    assert control(controlled, "POST", "throttle", {"streamName": arn, "shardId": SHARD0, "forMs": 600_000})[0] == 200
    control(controlled, "POST", "faults", {"operation": "CreateStream", "error": "InternalFailure", "count": 3})
    control(controlled, "POST", "reset")
    kinesis.create_stream(StreamName="reset-me", ShardCount=1)
    kinesis.put_record(StreamName="reset-me", Data=b"x", PartitionKey="k")
