"""boto3 against a real Sluice: the operations implemented so far, their
happy paths and their documented errors."""
import datetime

import pytest
from botocore.exceptions import ClientError


def error_of(excinfo):
    e = excinfo.value.response["Error"]
    return e["Code"], e["Message"]


def read_all(kinesis, stream, shard_id, **position):
    it = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard_id, **position)["ShardIterator"]
    out = []
    while True:
        r = kinesis.get_records(ShardIterator=it, Limit=1000)
        out.extend(r["Records"])
        if not r["Records"]:
            return out
        it = r["NextShardIterator"]


def test_stream_lifecycle(kinesis):
    kinesis.create_stream(StreamName="life", ShardCount=3, StreamModeDetails={"StreamMode": "PROVISIONED"})
    kinesis.get_waiter("stream_exists").wait(StreamName="life", WaiterConfig={"Delay": 1})
    d = kinesis.describe_stream(StreamName="life")["StreamDescription"]
    assert d["StreamStatus"] == "ACTIVE"
    assert d["StreamARN"] == "arn:aws:kinesis:us-east-1:000000000000:stream/life"
    assert [s["ShardId"] for s in d["Shards"]] == ["shardId-000000000000", "shardId-000000000001", "shardId-000000000002"]
    assert d["Shards"][0]["HashKeyRange"]["StartingHashKey"] == "0"
    assert d["Shards"][2]["HashKeyRange"]["EndingHashKey"] == str(2**128 - 1)
    assert isinstance(d["StreamCreationTimestamp"], datetime.datetime)
    s = kinesis.describe_stream_summary(StreamARN=d["StreamARN"])["StreamDescriptionSummary"]
    assert s["OpenShardCount"] == 3 and s["RetentionPeriodHours"] == 24
    assert "life" in kinesis.list_streams()["StreamNames"]
    with pytest.raises(ClientError) as e:
        kinesis.create_stream(StreamName="life", ShardCount=1)
    assert error_of(e) == ("ResourceInUseException", "Stream life under account 000000000000 already exists.")
    kinesis.delete_stream(StreamName="life")
    with pytest.raises(ClientError) as e:
        kinesis.describe_stream_summary(StreamName="life")
    assert error_of(e) == ("ResourceNotFoundException", "Stream life under account 000000000000 not found.")
    with pytest.raises(ClientError) as e:
        kinesis.delete_stream(StreamName="life")
    assert error_of(e)[0] == "ResourceNotFoundException"


def test_on_demand_streams_start_with_four_shards(kinesis):
    kinesis.create_stream(StreamName="od", StreamModeDetails={"StreamMode": "ON_DEMAND"})
    s = kinesis.describe_stream_summary(StreamName="od")["StreamDescriptionSummary"]
    assert s["OpenShardCount"] == 4 and s["StreamModeDetails"]["StreamMode"] == "ON_DEMAND"
    kinesis.delete_stream(StreamName="od")


def test_create_stream_with_a_name_alone(kinesis):
    # AWS accepts CreateStream with neither ShardCount nor StreamModeDetails
    # and makes a 4-shard stream (issue #15; kinesis-mock#336 for the
    # acceptance); Sluice makes it ON_DEMAND, whose start is 4 shards.
    kinesis.create_stream(StreamName="bare")
    s = kinesis.describe_stream_summary(StreamName="bare")["StreamDescriptionSummary"]
    assert s["OpenShardCount"] == 4 and s["StreamModeDetails"]["StreamMode"] == "ON_DEMAND"
    kinesis.delete_stream(StreamName="bare")


def test_list_streams_pages(kinesis):
    for i in range(5):
        kinesis.create_stream(StreamName=f"page-{i}", ShardCount=1)
    names = []
    page = kinesis.list_streams(Limit=2, ExclusiveStartStreamName="page-")
    names += page["StreamNames"]
    while page["HasMoreStreams"]:
        page = kinesis.list_streams(Limit=2, NextToken=page["NextToken"])
        names += page["StreamNames"]
    assert [n for n in names if n.startswith("page-")] == [f"page-{i}" for i in range(5)]
    for i in range(5):
        kinesis.delete_stream(StreamName=f"page-{i}")


def test_put_record_and_read_back(kinesis, stream):
    r = kinesis.put_record(StreamName=stream, Data=b"hello", PartitionKey="user-1")
    assert len(r["SequenceNumber"]) == 56 and r["ShardId"].startswith("shardId-")
    r2 = kinesis.put_record(StreamName=stream, Data=b"again", PartitionKey="user-1", SequenceNumberForOrdering=r["SequenceNumber"])
    assert r2["ShardId"] == r["ShardId"] and int(r2["SequenceNumber"]) > int(r["SequenceNumber"])
    records = read_all(kinesis, stream, r["ShardId"], ShardIteratorType="TRIM_HORIZON")
    assert [x["Data"] for x in records] == [b"hello", b"again"]
    assert records[0]["PartitionKey"] == "user-1"
    assert isinstance(records[0]["ApproximateArrivalTimestamp"], datetime.datetime)


def test_all_iterator_types(kinesis, stream):
    seqs = [kinesis.put_record(StreamName=stream, Data=bytes([i]), PartitionKey="k", ExplicitHashKey="0")["SequenceNumber"] for i in range(4)]
    shard = "shardId-000000000000"
    data = lambda recs: [r["Data"] for r in recs]
    assert data(read_all(kinesis, stream, shard, ShardIteratorType="TRIM_HORIZON")) == [b"\0", b"\1", b"\2", b"\3"]
    assert data(read_all(kinesis, stream, shard, ShardIteratorType="AT_SEQUENCE_NUMBER", StartingSequenceNumber=seqs[2])) == [b"\2", b"\3"]
    assert data(read_all(kinesis, stream, shard, ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=seqs[2])) == [b"\3"]
    assert data(read_all(kinesis, stream, shard, ShardIteratorType="AT_TIMESTAMP", Timestamp=datetime.datetime(2000, 1, 1))) == [b"\0", b"\1", b"\2", b"\3"]
    # A timestamp in the future is refused, as AWS does (kinesalite, tested
    # against AWS, words it so): issue #15.
    with pytest.raises(ClientError) as e:
        read_all(kinesis, stream, shard, ShardIteratorType="AT_TIMESTAMP", Timestamp=datetime.datetime(2100, 1, 1))
    code, message = error_of(e)
    assert code == "InvalidArgumentException"
    assert message.startswith("The timestampInMillis parameter cannot be greater than the currentTimestampInMillis. "
                              "timestampInMillis: 4102444800000, currentTimestampInMillis: ")
    latest = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard, ShardIteratorType="LATEST")["ShardIterator"]
    assert kinesis.get_records(ShardIterator=latest)["Records"] == []
    kinesis.put_record(StreamName=stream, Data=b"new", PartitionKey="k", ExplicitHashKey="0")
    got = kinesis.get_records(ShardIterator=latest)
    assert [r["Data"] for r in got["Records"]] == [b"new"] and got["MillisBehindLatest"] == 0


def test_at_the_shards_starting_sequence_number_even_when_empty(kinesis, stream):
    # AWS: AT_SEQUENCE_NUMBER at the shard's own StartingSequenceNumber is
    # valid before any record is in the shard (issue #15).
    shard = kinesis.list_shards(StreamName=stream)["Shards"][0]
    start = shard["SequenceNumberRange"]["StartingSequenceNumber"]
    it = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"],
                                    ShardIteratorType="AT_SEQUENCE_NUMBER", StartingSequenceNumber=start)["ShardIterator"]
    assert kinesis.get_records(ShardIterator=it)["Records"] == []
    kinesis.put_record(StreamName=stream, Data=b"first", PartitionKey="k", ExplicitHashKey=shard["HashKeyRange"]["StartingHashKey"])
    assert [r["Data"] for r in kinesis.get_records(ShardIterator=it)["Records"]] == [b"first"]
    # And on a shard with records, the first record.
    got = read_all(kinesis, stream, shard["ShardId"], ShardIteratorType="AT_SEQUENCE_NUMBER", StartingSequenceNumber=start)
    assert [r["Data"] for r in got] == [b"first"]


def test_a_shard_iterator_in_double_quotes(kinesis, stream):
    # AWS accepts an iterator wrapped in double quotes, as tools pass the
    # CLI's JSON output on (issue #15).
    kinesis.put_record(StreamName=stream, Data=b"q", PartitionKey="k", ExplicitHashKey="0")
    it = kinesis.get_shard_iterator(StreamName=stream, ShardId="shardId-000000000000", ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    got = kinesis.get_records(ShardIterator=f'"{it}"')
    assert [r["Data"] for r in got["Records"]] == [b"q"]
    with pytest.raises(ClientError) as e:
        kinesis.get_records(ShardIterator=f'"{it}')
    assert error_of(e) == ("InvalidArgumentException", "Invalid ShardIterator.")


def test_iterator_types_and_positions_that_aws_refuses(kinesis, stream):
    # AWS's words, as kinesalite (whose tests ran against AWS) and users of
    # the AWS SDKs recorded them (issue #15).
    both = ("Must either specify (1) AT_SEQUENCE_NUMBER or AFTER_SEQUENCE_NUMBER and StartingSequenceNumber or "
            "(2) TRIM_HORIZON or LATEST and no StartingSequenceNumber. Request specified ")
    shard0, shard1 = "shardId-000000000000", "shardId-000000000001"
    seq0 = kinesis.put_record(StreamName=stream, Data=b"x", PartitionKey="k", ExplicitHashKey="0")["SequenceNumber"]
    for kind in ["TRIM_HORIZON", "LATEST"]:
        with pytest.raises(ClientError) as e:
            kinesis.get_shard_iterator(StreamName=stream, ShardId=shard0, ShardIteratorType=kind, StartingSequenceNumber=seq0)
        assert error_of(e) == ("InvalidArgumentException", f"{both}{kind} and also a StartingSequenceNumber.")
    for kind in ["AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"]:
        with pytest.raises(ClientError) as e:
            kinesis.get_shard_iterator(StreamName=stream, ShardId=shard0, ShardIteratorType=kind)
        assert error_of(e) == ("InvalidArgumentException", f"{both}{kind} and no StartingSequenceNumber.")
    with pytest.raises(ClientError) as e:
        kinesis.get_shard_iterator(StreamName=stream, ShardId=shard0, ShardIteratorType="AT_TIMESTAMP")
    assert error_of(e) == ("InvalidArgumentException",
                           "Must specify timestampInMillis parameter for iterator of type AT_TIMESTAMP. Current request has no timestamp parameter.")
    # A sequence number of another shard of the stream (as AWS answered a boto3 user).
    with pytest.raises(ClientError) as e:
        kinesis.get_shard_iterator(StreamName=stream, ShardId=shard1, ShardIteratorType="AT_SEQUENCE_NUMBER", StartingSequenceNumber=seq0)
    assert error_of(e) == ("InvalidArgumentException",
                           f"Invalid StartingSequenceNumber. It encodes {shard0}, while it was used in a call to {shard1}")
    # One of another stream.
    kinesis.create_stream(StreamName=f"{stream}-other", ShardCount=1)
    other = kinesis.put_record(StreamName=f"{stream}-other", Data=b"y", PartitionKey="k")["SequenceNumber"]
    with pytest.raises(ClientError) as e:
        kinesis.get_shard_iterator(StreamName=stream, ShardId=shard0, ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=other)
    assert error_of(e) == ("InvalidArgumentException",
                           f"StartingSequenceNumber {other} used in GetShardIterator on shard {shard0} in stream {stream} "
                           "under account 000000000000 is invalid because it did not come from this stream.")
    kinesis.delete_stream(StreamName=f"{stream}-other")


def test_iterator_errors(kinesis, stream):
    with pytest.raises(ClientError) as e:
        kinesis.get_shard_iterator(StreamName=stream, ShardId="shardId-000000000009", ShardIteratorType="LATEST")
    assert error_of(e) == ("ResourceNotFoundException", f"Shard shardId-000000000009 in stream {stream} under account 000000000000 does not exist")
    with pytest.raises(ClientError) as e:
        kinesis.get_shard_iterator(StreamName=stream, ShardId="shardId-000000000000", ShardIteratorType="AT_SEQUENCE_NUMBER", StartingSequenceNumber="123")
    assert error_of(e)[0] == "InvalidArgumentException"
    with pytest.raises(ClientError) as e:
        kinesis.get_shard_iterator(StreamName=stream, ShardId="shardId-000000000000", ShardIteratorType="AT_SEQUENCE_NUMBER")
    assert error_of(e)[0] == "InvalidArgumentException"
    with pytest.raises(ClientError) as e:
        kinesis.get_records(ShardIterator="AAAA" * 20)
    assert error_of(e) == ("InvalidArgumentException", "Invalid ShardIterator.")


def test_put_records_routes_and_reports_per_entry(kinesis, stream):
    entries = [{"Data": f"r{i}".encode(), "PartitionKey": f"key-{i}"} for i in range(500)]
    r = kinesis.put_records(StreamName=stream, Records=entries)
    assert r["FailedRecordCount"] == 0 and len(r["Records"]) == 500
    by_shard = {}
    for entry, result in zip(entries, r["Records"]):
        by_shard.setdefault(result["ShardId"], []).append((result["SequenceNumber"], entry["Data"]))
    assert set(by_shard) == {"shardId-000000000000", "shardId-000000000001"}
    for shard, expected in by_shard.items():
        assert [int(s) for s, _ in expected] == sorted(int(s) for s, _ in expected)
        got = read_all(kinesis, stream, shard, ShardIteratorType="TRIM_HORIZON")
        assert [(x["SequenceNumber"], x["Data"]) for x in got] == expected


def test_validation_errors_use_aws_wording(kinesis, stream):
    with pytest.raises(ClientError) as e:
        kinesis.put_record(StreamName=stream, Data=b"x" * (1024 * 1024 + 1), PartitionKey="k")
    assert error_of(e) == ("ValidationException", "1 validation error detected: Value at 'data' failed to satisfy constraint: Member must have length less than or equal to 1048576")
    with pytest.raises(ClientError) as e:
        kinesis.put_record(StreamName=stream, Data=b"x", PartitionKey="k", ExplicitHashKey=str(2**128))
    assert error_of(e)[0] == "InvalidArgumentException"
    with pytest.raises(ClientError) as e:
        kinesis.put_record(StreamName="nope", Data=b"x", PartitionKey="k")
    assert error_of(e) == ("ResourceNotFoundException", "Stream nope under account 000000000000 not found.")


def test_list_shards_pages(kinesis):
    kinesis.create_stream(StreamName="many", ShardCount=7)
    page = kinesis.list_shards(StreamName="many", MaxResults=3)
    ids = [s["ShardId"] for s in page["Shards"]]
    while "NextToken" in page:
        page = kinesis.list_shards(NextToken=page["NextToken"], MaxResults=3)
        ids += [s["ShardId"] for s in page["Shards"]]
    assert ids == [f"shardId-{i:012}" for i in range(7)]
    all_ids = [f"shardId-{i:012}" for i in range(7)]

    def filtered(**f):
        return [s["ShardId"] for s in kinesis.list_shards(StreamName="many", ShardFilter=f)["Shards"]]

    assert filtered(Type="AFTER_SHARD_ID", ShardId="shardId-000000000004") == all_ids[5:]
    for kind in ["AT_LATEST", "AT_TRIM_HORIZON", "FROM_TRIM_HORIZON"]:
        assert filtered(Type=kind) == all_ids
    now = datetime.datetime.now(datetime.timezone.utc)
    for kind in ["AT_TIMESTAMP", "FROM_TIMESTAMP"]:
        assert filtered(Type=kind, Timestamp=now) == all_ids
    for bad, message in [
        ({"Type": "AFTER_SHARD_ID"}, "ShardId must be provided for ShardFilter type AFTER_SHARD_ID."),
        ({"Type": "AT_TIMESTAMP"}, "Timestamp must be provided for ShardFilter type AT_TIMESTAMP."),
        ({"Type": "AT_LATEST", "ShardId": "shardId-000000000000"}, "ShardId must not be provided for ShardFilter type AT_LATEST."),
    ]:
        with pytest.raises(ClientError) as e:
            kinesis.list_shards(StreamName="many", ShardFilter=bad)
        assert error_of(e) == ("InvalidArgumentException", message)
    first = kinesis.list_shards(StreamName="many", MaxResults=1)
    with pytest.raises(ClientError) as e:
        kinesis.list_shards(NextToken=first["NextToken"], ShardFilter={"Type": "AT_LATEST"})
    assert error_of(e) == ("InvalidArgumentException", "NextToken and ShardFilter cannot be provided together.")
    kinesis.delete_stream(StreamName="many")


def test_signatures_are_verified_when_credentials_are_configured(tmp_path):
    import subprocess
    import boto3
    from botocore.config import Config
    from conftest import ROOT
    import os

    binary = os.environ.get("SLUICE_BIN", str(ROOT / "target" / "debug" / "sluice"))
    proc = subprocess.Popen(
        [binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path), "--credentials", "AKIDGOOD:good-secret:999988887777,AKIDPLAIN:plain-secret"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        endpoint = "http://" + proc.stdout.readline().split()[-1]

        def client(key, secret, region="us-east-1"):
            return boto3.client("kinesis", endpoint_url=endpoint, region_name=region, aws_access_key_id=key,
                                aws_secret_access_key=secret, config=Config(retries={"max_attempts": 1}))

        good = client("AKIDGOOD", "good-secret")
        good.create_stream(StreamName="signed", ShardCount=1)
        good.put_record(StreamName="signed", Data=b"x" * 1000, PartitionKey="p/with spaces&symbols=")
        assert good.list_streams()["StreamNames"] == ["signed"]
        # The account configured for the key, else the default account.
        summary = good.describe_stream_summary(StreamName="signed")["StreamDescriptionSummary"]
        assert summary["StreamARN"] == "arn:aws:kinesis:us-east-1:999988887777:stream/signed"
        assert client("AKIDPLAIN", "plain-secret").list_streams()["StreamNames"] == []
        with pytest.raises(ClientError) as e:
            client("AKIDGOOD", "wrong-secret").list_streams()
        assert error_of(e)[0] == "InvalidSignatureException"
        assert excinfo_status(e) == 400
        with pytest.raises(ClientError) as e:
            client("AKIDOTHER", "good-secret").list_streams()
        assert error_of(e) == ("UnrecognizedClientException", "The security token included in the request is invalid.")
        # Another region: served, apart, as long as the signature (which
        # covers the region) is right.
        west = client("AKIDGOOD", "good-secret", region="eu-west-1")
        assert west.list_streams()["StreamNames"] == []
        west.create_stream(StreamName="signed", ShardCount=2)
        assert west.describe_stream_summary(StreamName="signed")["StreamDescriptionSummary"]["StreamARN"] == \
            "arn:aws:kinesis:eu-west-1:999988887777:stream/signed"
        with pytest.raises(ClientError) as e:
            client("AKIDGOOD", "wrong-secret", region="eu-west-1").list_streams()
        assert error_of(e)[0] == "InvalidSignatureException"
        # A region no ARN can carry is refused, signed or not.
        with pytest.raises(ClientError) as e:
            client("AKIDGOOD", "good-secret", region="EU-WEST-1").list_streams()
        assert error_of(e) == ("InvalidSignatureException",
                               "Credential should be scoped to a valid region, not 'EU-WEST-1'.")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def excinfo_status(excinfo):
    return excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"]


def test_tls(tmp_path):
    import os
    import subprocess
    import boto3
    from botocore.config import Config
    from conftest import ROOT

    fixtures = ROOT / "crates" / "server" / "tests" / "fixtures"
    binary = os.environ.get("SLUICE_BIN", str(ROOT / "target" / "debug" / "sluice"))
    proc = subprocess.Popen(
        [binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path),
         "--tls-cert", str(fixtures / "localhost.crt"), "--tls-key", str(fixtures / "localhost.key")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port = proc.stdout.readline().split(":")[-1].strip()
        kinesis = boto3.client("kinesis", endpoint_url=f"https://localhost:{port}", region_name="us-east-1",
                               aws_access_key_id="a", aws_secret_access_key="b", verify=str(fixtures / "localhost.crt"),
                               config=Config(retries={"max_attempts": 1}))
        kinesis.create_stream(StreamName="secure", ShardCount=1)
        kinesis.put_record(StreamName="secure", Data=b"over tls", PartitionKey="k")
        assert kinesis.describe_stream_summary(StreamName="secure")["StreamDescriptionSummary"]["OpenShardCount"] == 1
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_each_region_is_its_own_namespace(endpoint):
    """AWS scopes streams by account and region; one Sluice answers every
    region, in the region the request's SigV4 credential scope names."""
    from conftest import client

    east, west, china = (client(endpoint, region=r) for r in ("us-east-1", "us-west-2", "cn-north-1"))
    east.create_stream(StreamName="regional", ShardCount=1)
    west.create_stream(StreamName="regional", ShardCount=3)
    e = east.describe_stream_summary(StreamName="regional")["StreamDescriptionSummary"]
    w = west.describe_stream_summary(StreamName="regional")["StreamDescriptionSummary"]
    assert e["StreamARN"] == "arn:aws:kinesis:us-east-1:000000000000:stream/regional"
    assert w["StreamARN"] == "arn:aws:kinesis:us-west-2:000000000000:stream/regional"
    assert (e["OpenShardCount"], w["OpenShardCount"]) == (1, 3)
    assert "regional" not in china.list_streams()["StreamNames"]
    with pytest.raises(ClientError) as err:
        china.describe_stream_summary(StreamName="regional")
    assert error_of(err) == ("ResourceNotFoundException", "Stream regional under account 000000000000 not found.")
    # An ARN of another region names no stream of this one.
    with pytest.raises(ClientError) as err:
        east.describe_stream_summary(StreamARN=w["StreamARN"])
    assert error_of(err)[0] == "ResourceNotFoundException"
    # The China partition's ARNs, and consumers' ARNs, in the request's region.
    china.create_stream(StreamName="regional", ShardCount=1)
    c = china.describe_stream_summary(StreamName="regional")["StreamDescriptionSummary"]
    assert c["StreamARN"] == "arn:aws-cn:kinesis:cn-north-1:000000000000:stream/regional"
    consumer = china.register_stream_consumer(StreamARN=c["StreamARN"], ConsumerName="app")["Consumer"]
    assert consumer["ConsumerARN"].startswith("arn:aws-cn:kinesis:cn-north-1:000000000000:stream/regional/consumer/app:")
    # DescribeLimits counts per account and region.
    assert west.describe_limits()["OpenShardCount"] == 3
    # Iterators are bound to the region they were issued in.
    west.put_record(StreamName="regional", Data=b"w", PartitionKey="p")
    it = west.get_shard_iterator(StreamName="regional", ShardId="shardId-000000000000",
                                 ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    with pytest.raises(ClientError) as err:
        east.get_records(ShardIterator=it)
    assert error_of(err) == ("InvalidArgumentException", "Invalid ShardIterator.")
    # Tags and deletes stay in their region.
    west.add_tags_to_stream(StreamName="regional", Tags={"where": "west"})
    assert east.list_tags_for_stream(StreamName="regional")["Tags"] == []
    west.delete_stream(StreamName="regional")
    assert east.describe_stream_summary(StreamName="regional")["StreamDescriptionSummary"]["OpenShardCount"] == 1
    china.deregister_stream_consumer(ConsumerARN=consumer["ConsumerARN"])
    china.delete_stream(StreamName="regional")
    east.delete_stream(StreamName="regional")


def test_accounts_come_from_access_keys(endpoint):
    """A 12-digit access key acts as that account (LocalStack's convention);
    any other key acts as the default account. Accounts never see each other."""
    from conftest import client

    default, alice, bob = (client(endpoint, access_key=k) for k in ("AKIDEXAMPLE", "111122223333", "444455556666"))
    alice.create_stream(StreamName="shared-name", ShardCount=1)
    bob.create_stream(StreamName="shared-name", ShardCount=2)
    a = alice.describe_stream_summary(StreamName="shared-name")["StreamDescriptionSummary"]
    b = bob.describe_stream_summary(StreamName="shared-name")["StreamDescriptionSummary"]
    assert a["StreamARN"] == "arn:aws:kinesis:us-east-1:111122223333:stream/shared-name"
    assert (a["OpenShardCount"], b["OpenShardCount"]) == (1, 2)
    assert "shared-name" in alice.list_streams()["StreamNames"]
    assert "shared-name" not in default.list_streams()["StreamNames"]
    with pytest.raises(ClientError) as e:
        default.describe_stream_summary(StreamName="shared-name")
    assert error_of(e) == ("ResourceNotFoundException", "Stream shared-name under account 000000000000 not found.")
    # Another account's ARN is not found either.
    with pytest.raises(ClientError) as e:
        bob.describe_stream_summary(StreamARN=a["StreamARN"])
    assert error_of(e)[0] == "ResourceNotFoundException"
    # The shard limit and DescribeLimits count per account.
    assert alice.describe_limits()["OpenShardCount"] == 1
    assert bob.describe_limits()["OpenShardCount"] == 2
    # Iterators are bound to the account they were issued to.
    alice.put_record(StreamName="shared-name", Data=b"a", PartitionKey="p")
    it = alice.get_shard_iterator(StreamName="shared-name", ShardId="shardId-000000000000",
                                  ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    with pytest.raises(ClientError) as e:
        bob.get_records(ShardIterator=it)
    assert error_of(e) == ("InvalidArgumentException", "Invalid ShardIterator.")
    assert [r["Data"] for r in alice.get_records(ShardIterator=it)["Records"]] == [b"a"]
    alice.delete_stream(StreamName="shared-name")
    assert bob.describe_stream_summary(StreamName="shared-name")["StreamDescriptionSummary"]["OpenShardCount"] == 2
    bob.delete_stream(StreamName="shared-name")
