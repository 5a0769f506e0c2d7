"""boto3: SplitShard and MergeShards while a producer writes, and a consumer
that follows the lineage (parents before children) and reads every record
exactly once, in order per partition key."""
import threading

import pytest
from botocore.exceptions import ClientError


def error_of(excinfo):
    e = excinfo.value.response["Error"]
    return e["Code"], e["Message"]


def read_shard(kinesis, stream, shard_id):
    """Every record of a shard from TRIM_HORIZON; for a closed shard, also its ChildShards."""
    it = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    records = []
    while True:
        r = kinesis.get_records(ShardIterator=it, Limit=1000)
        records.extend(r["Records"])
        if "NextShardIterator" not in r:
            return records, r.get("ChildShards", [])
        if not r["Records"] and r["MillisBehindLatest"] == 0:
            return records, None
        it = r["NextShardIterator"]


def read_lineage(kinesis, stream, shards, closed):
    """Every record of the stream as (key, n), reading parents before children
    and following ChildShards from each closed shard."""
    done, seen = set(), []
    pending = [i for i, s in shards.items() if "ParentShardId" not in s]
    while pending:
        ready = [i for i in pending if all(p in done for p in
                                           (shards[i].get("ParentShardId"), shards[i].get("AdjacentParentShardId")) if p)]
        assert ready, pending
        shard_id = sorted(ready)[0]
        pending.remove(shard_id)
        records, children = read_shard(kinesis, stream, shard_id)
        seen.extend(tuple(r["Data"].decode().split(":")) for r in records)
        if shard_id in closed:
            assert children, f"{shard_id} is closed: GetRecords names its children"
            for child in children:
                assert set(child["ParentShards"]) <= set(shards)
                if child["ShardId"] not in pending and child["ShardId"] not in done:
                    pending.append(child["ShardId"])
        else:
            assert children is None
        done.add(shard_id)
    assert done == set(shards), "every shard is reached through the lineage"
    return seen


class Producer:
    """PutRecords of 16 keys in a thread; `wait_for(n)` blocks until n batches are in."""

    def __init__(self, kinesis, stream, batches):
        self.keys = [f"key-{i}" for i in range(16)]
        self.sent, self.failures, self.done = [], [], 0
        self.progress = threading.Condition()
        self.thread = threading.Thread(target=self.run, args=(kinesis, stream, batches))
        self.thread.start()

    def run(self, kinesis, stream, batches):
        try:
            for n in range(batches):
                records = [{"Data": f"{k}:{n}".encode(), "PartitionKey": k} for k in self.keys]
                r = kinesis.put_records(StreamName=stream, Records=records)
                assert r["FailedRecordCount"] == 0, r
                self.sent.extend((k, n) for k in self.keys)
                with self.progress:
                    self.done += 1
                    self.progress.notify_all()
        except Exception as e:  # surfaced by join()
            self.failures.append(e)
            with self.progress:
                self.done = 10**9
                self.progress.notify_all()

    def wait_for(self, batches):
        with self.progress:
            self.progress.wait_for(lambda: self.done >= batches)

    def join(self):
        self.thread.join()
        assert not self.failures, self.failures


def shards_of(kinesis, stream):
    shards = {s["ShardId"]: s for s in kinesis.list_shards(StreamName=stream)["Shards"]}
    closed = {i for i, s in shards.items() if "EndingSequenceNumber" in s["SequenceNumberRange"]}
    return shards, closed


def test_uniform_scaling_four_to_three_as_aws_did_it(kinesis):
    # Observed on AWS (risingwavelabs/risingwave#9961): 4 -> 3 splits shards 1
    # and 2, merges the pieces from the lowest range up and leaves shards 6, 9
    # and 10 open, 11 in all (issue #15).
    kinesis.create_stream(StreamName="four", ShardCount=4)
    kinesis.update_shard_count(StreamName="four", TargetShardCount=3, ScalingType="UNIFORM_SCALING")
    shards = kinesis.list_shards(StreamName="four")["Shards"]
    assert len(shards) == 11
    open_ids = [s["ShardId"] for s in shards if "EndingSequenceNumber" not in s["SequenceNumberRange"]]
    assert open_ids == ["shardId-000000000006", "shardId-000000000009", "shardId-000000000010"]
    kinesis.delete_stream(StreamName="four")


def test_update_shard_count_while_a_producer_writes(kinesis):
    stream = "scaling"
    kinesis.create_stream(StreamName=stream, ShardCount=2)
    producer = Producer(kinesis, stream, 90)
    producer.wait_for(20)
    out = kinesis.update_shard_count(StreamName=stream, TargetShardCount=4, ScalingType="UNIFORM_SCALING")
    assert (out["CurrentShardCount"], out["TargetShardCount"]) == (2, 4)
    producer.wait_for(50)
    kinesis.update_shard_count(StreamName=stream, TargetShardCount=3, ScalingType="UNIFORM_SCALING")
    producer.join()
    shards, closed = shards_of(kinesis, stream)
    open_ranges = sorted((int(s["HashKeyRange"]["StartingHashKey"]), int(s["HashKeyRange"]["EndingHashKey"]))
                         for i, s in shards.items() if i not in closed)
    # The same uniform ranges as a new 3-shard stream.
    assert open_ranges == [(0, 2**128 // 3 - 1), (2**128 // 3, 2 * 2**128 // 3 - 1), (2 * 2**128 // 3, 2**128 - 1)]
    assert kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["OpenShardCount"] == 3
    seen = read_lineage(kinesis, stream, shards, closed)
    assert sorted(seen) == sorted((k, str(n)) for k, n in producer.sent)
    for k in producer.keys:
        assert [int(n) for key, n in seen if key == k] == list(range(90)), f"order of {k}"
    for target, message in [
        (7, "UpdateShardCount cannot scale up over double your current open shard count. Current open shard count: 3 Target shard count: 7"),
        (1, "UpdateShardCount cannot scale down below half your current open shard count. Current open shard count: 3 Target shard count: 1"),
    ]:
        with pytest.raises(ClientError) as e:
            kinesis.update_shard_count(StreamName=stream, TargetShardCount=target, ScalingType="UNIFORM_SCALING")
        assert error_of(e) == ("LimitExceededException", message)
    kinesis.delete_stream(StreamName=stream)


def test_split_and_merge_while_a_producer_writes(kinesis):
    stream = "reshard"
    kinesis.create_stream(StreamName=stream, ShardCount=2)
    keys = [f"key-{i}" for i in range(16)]
    sent = []  # (key, n) in send order
    progress = threading.Condition()
    batches_done = [0]
    failures = []

    def produce():
        try:
            for n in range(120):
                records = [{"Data": f"{k}:{n}".encode(), "PartitionKey": k} for k in keys]
                r = kinesis.put_records(StreamName=stream, Records=records)
                assert r["FailedRecordCount"] == 0, r
                sent.extend((k, n) for k in keys)
                with progress:
                    batches_done[0] += 1
                    progress.notify_all()
        except Exception as e:  # surfaced by the main thread
            failures.append(e)
            with progress:
                batches_done[0] = 10**9
                progress.notify_all()

    def wait_for(batches):
        with progress:
            progress.wait_for(lambda: batches_done[0] >= batches)

    producer = threading.Thread(target=produce)
    producer.start()
    wait_for(20)
    shards = kinesis.list_shards(StreamName=stream)["Shards"]
    s0 = shards[0]["HashKeyRange"]
    middle = (int(s0["StartingHashKey"]) + int(s0["EndingHashKey"])) // 2
    kinesis.split_shard(StreamName=stream, ShardToSplit="shardId-000000000000", NewStartingHashKey=str(middle))
    wait_for(50)
    # shardId-000000000003 (upper half of 0) and shardId-000000000001 are adjacent.
    kinesis.merge_shards(StreamName=stream, ShardToMerge="shardId-000000000003",
                         AdjacentShardToMerge="shardId-000000000001")
    wait_for(80)
    kinesis.split_shard(StreamName=stream, ShardToSplit="shardId-000000000004",
                        NewStartingHashKey=str(2**127 + 12345))
    producer.join()
    assert not failures, failures

    # Lineage in ListShards and DescribeStream.
    shards = {s["ShardId"]: s for s in kinesis.list_shards(StreamName=stream)["Shards"]}
    assert sorted(shards) == [f"shardId-00000000000{i}" for i in range(7)]
    assert shards["shardId-000000000002"]["ParentShardId"] == "shardId-000000000000"
    assert shards["shardId-000000000004"]["ParentShardId"] == "shardId-000000000003"
    assert shards["shardId-000000000004"]["AdjacentParentShardId"] == "shardId-000000000001"
    closed = {i for i, s in shards.items() if "EndingSequenceNumber" in s["SequenceNumberRange"]}
    assert closed == {"shardId-000000000000", "shardId-000000000001", "shardId-000000000003", "shardId-000000000004"}
    latest = kinesis.list_shards(StreamName=stream, ShardFilter={"Type": "AT_LATEST"})["Shards"]
    assert sorted(s["ShardId"] for s in latest) == ["shardId-000000000002", "shardId-000000000005", "shardId-000000000006"]
    summary = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
    assert summary["OpenShardCount"] == 3 and summary["StreamStatus"] == "ACTIVE"
    described = kinesis.describe_stream(StreamName=stream)["StreamDescription"]["Shards"]
    assert len(described) == 7

    seen = read_lineage(kinesis, stream, shards, closed)
    assert len(seen) == len(sent) == 120 * len(keys), "every record exactly once"
    assert sorted(seen) == sorted((k, str(n)) for k, n in sent)
    for k in keys:
        assert [int(n) for key, n in seen if key == k] == list(range(120)), f"order of {k}"
    kinesis.delete_stream(StreamName=stream)


def test_resharding_errors(kinesis):
    stream = "reshard-errors"
    kinesis.create_stream(StreamName=stream, ShardCount=3)
    s0 = kinesis.list_shards(StreamName=stream)["Shards"][0]["HashKeyRange"]
    for key in [s0["StartingHashKey"], str(int(s0["StartingHashKey"]) + 1), s0["EndingHashKey"]]:
        with pytest.raises(ClientError) as e:
            kinesis.split_shard(StreamName=stream, ShardToSplit="shardId-000000000000", NewStartingHashKey=key)
        assert error_of(e) == ("InvalidArgumentException",
                               f"NewStartingHashKey {key} used in SplitShard() on shard shardId-000000000000 in stream "
                               f"{stream} under account 000000000000 is not both greater than one plus the shard's "
                               f"StartingHashKey {s0['StartingHashKey']} and less than the shard's EndingHashKey "
                               f"{s0['EndingHashKey']}.")
    with pytest.raises(ClientError) as e:
        kinesis.split_shard(StreamName=stream, ShardToSplit="shardId-000000000009", NewStartingHashKey="5")
    assert error_of(e) == ("ResourceNotFoundException",
                           f"Could not find shard shardId-000000000009 in stream {stream} under account 000000000000.")
    with pytest.raises(ClientError) as e:
        kinesis.merge_shards(StreamName=stream, ShardToMerge="shardId-000000000000", AdjacentShardToMerge="shardId-000000000002")
    assert error_of(e) == ("InvalidArgumentException",
                           f"Shards shardId-000000000000 and shardId-000000000002 in stream {stream} under account "
                           f"000000000000 are not an adjacent pair of shards eligible for merging")
    kinesis.merge_shards(StreamName=stream, ShardToMerge="shardId-000000000001", AdjacentShardToMerge="shardId-000000000000")
    with pytest.raises(ClientError) as e:
        kinesis.split_shard(StreamName=stream, ShardToSplit="shardId-000000000000", NewStartingHashKey="12345")
    assert error_of(e)[0] == "InvalidArgumentException"
    assert "has already been merged or split" in error_of(e)[1]
    with pytest.raises(ClientError) as e:
        kinesis.merge_shards(StreamName="missing", ShardToMerge="shardId-000000000000", AdjacentShardToMerge="shardId-000000000001")
    assert error_of(e)[0] == "ResourceNotFoundException"
    # A put after the merge goes to the child; the closed parents end with ChildShards.
    r = kinesis.put_record(StreamName=stream, Data=b"x", PartitionKey="p", ExplicitHashKey="0")
    assert r["ShardId"] == "shardId-000000000003"
    records, children = read_shard(kinesis, stream, "shardId-000000000000")
    assert records == [] and [c["ShardId"] for c in children] == ["shardId-000000000003"]
    assert children[0]["ParentShards"] == ["shardId-000000000001", "shardId-000000000000"]
    kinesis.delete_stream(StreamName=stream)


def test_capacity_modes_and_warm_throughput(kinesis):
    stream = "modes"
    kinesis.create_stream(StreamName=stream, ShardCount=2)
    arn = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamARN"]

    def summary():
        return kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]

    with pytest.raises(ClientError) as e:
        kinesis.update_stream_warm_throughput(StreamName=stream, WarmThroughputMiBps=4)
    assert error_of(e)[0] == "InvalidArgumentException"
    with pytest.raises(ClientError) as e:
        kinesis.update_stream_mode(StreamARN=arn, StreamModeDetails={"StreamMode": "PROVISIONED"}, WarmThroughputMiBps=4)
    assert error_of(e)[0] == "InvalidArgumentException"
    kinesis.update_stream_mode(StreamARN=arn, StreamModeDetails={"StreamMode": "ON_DEMAND"}, WarmThroughputMiBps=6)
    s = summary()
    assert s["StreamModeDetails"]["StreamMode"] == "ON_DEMAND"
    assert s["OpenShardCount"] == 6, "pre-split for 6 MiB/s at 1 MiB/s per shard"
    assert s["WarmThroughput"] == {"TargetMiBps": 6, "CurrentMiBps": 6}
    with pytest.raises(ClientError) as e:
        kinesis.update_shard_count(StreamName=stream, TargetShardCount=8, ScalingType="UNIFORM_SCALING")
    # AWS's words as moto records them (issue #15).
    assert error_of(e) == ("ValidationException", f"Request is invalid. Stream {stream} under account 000000000000 is in On-Demand mode.")
    out = kinesis.update_stream_warm_throughput(StreamName=stream, WarmThroughputMiBps=9)
    assert out["WarmThroughput"] == {"TargetMiBps": 9, "CurrentMiBps": 9}
    assert out["StreamARN"] == arn and out["StreamName"] == stream
    kinesis.update_stream_mode(StreamARN=arn, StreamModeDetails={"StreamMode": "PROVISIONED"})
    s = summary()
    assert s["StreamModeDetails"]["StreamMode"] == "PROVISIONED" and "WarmThroughput" not in s
    assert s["OpenShardCount"] == 9
    kinesis.update_shard_count(StreamName=stream, TargetShardCount=5, ScalingType="UNIFORM_SCALING")
    assert summary()["OpenShardCount"] == 5
    kinesis.delete_stream(StreamName=stream)

    with pytest.raises(ClientError) as e:
        kinesis.create_stream(StreamName="warm-provisioned", ShardCount=1, WarmThroughputMiBps=3)
    assert error_of(e)[0] == "InvalidArgumentException"
    kinesis.create_stream(StreamName="warm", StreamModeDetails={"StreamMode": "ON_DEMAND"}, WarmThroughputMiBps=10)
    s = kinesis.describe_stream_summary(StreamName="warm")["StreamDescriptionSummary"]
    assert s["OpenShardCount"] == 10 and s["WarmThroughput"]["TargetMiBps"] == 10
    kinesis.delete_stream(StreamName="warm")


def test_list_shards_pages_keep_the_filter(kinesis):
    """Later pages carry only the NextToken; the first page's ShardFilter
    still applies to them."""
    stream = "paging-filter"
    kinesis.create_stream(StreamName=stream, ShardCount=4)
    shards = kinesis.list_shards(StreamName=stream)["Shards"]
    for shard_id in ("shardId-000000000003", "shardId-000000000001"):
        s = next(s for s in shards if s["ShardId"] == shard_id)
        lo, hi = int(s["HashKeyRange"]["StartingHashKey"]), int(s["HashKeyRange"]["EndingHashKey"])
        kinesis.split_shard(StreamName=stream, ShardToSplit=shard_id, NewStartingHashKey=str((lo + hi) // 2))
    page = kinesis.list_shards(StreamName=stream, ShardFilter={"Type": "AT_LATEST"}, MaxResults=2)
    ids = [s["ShardId"] for s in page["Shards"]]
    while "NextToken" in page:
        page = kinesis.list_shards(NextToken=page["NextToken"], MaxResults=2)
        ids += [s["ShardId"] for s in page["Shards"]]
    assert ids == ["shardId-000000000000", "shardId-000000000002", "shardId-000000000004",
                   "shardId-000000000005", "shardId-000000000006", "shardId-000000000007"]
    kinesis.delete_stream(StreamName=stream)
