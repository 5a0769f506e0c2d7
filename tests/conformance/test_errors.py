"""boto3: the documented errors of every implemented operation that Sluice can
produce, one case each. LimitExceededException as API rate limiting and
ProvisionedThroughputExceededException belong to the limits (#7); the KMS*
errors and AccessDeniedException need KMS and IAM, which Sluice does not have
(docs/api-compatibility.md). ExpiredIteratorException and
ExpiredNextTokenException need minutes to pass, so crates/server/tests/server.rs
covers them on a manual clock."""
import datetime
import os
import subprocess

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import ROOT

MISSING = "arn:aws:kinesis:us-east-1:000000000000:stream/missing"


def code_of(call):
    with pytest.raises(ClientError) as e:
        call()
    return e.value.response["Error"]["Code"]


# Every operation that names a stream answers ResourceNotFoundException for a missing one.
NOT_FOUND = [
    ("delete_stream", {"StreamName": "missing"}),
    ("describe_stream", {"StreamName": "missing"}),
    ("describe_stream_summary", {"StreamARN": MISSING}),
    ("list_shards", {"StreamName": "missing"}),
    ("put_record", {"StreamName": "missing", "Data": b"x", "PartitionKey": "p"}),
    ("put_records", {"StreamName": "missing", "Records": [{"Data": b"x", "PartitionKey": "p"}]}),
    ("get_shard_iterator", {"StreamName": "missing", "ShardId": "shardId-000000000000", "ShardIteratorType": "LATEST"}),
    ("increase_stream_retention_period", {"StreamName": "missing", "RetentionPeriodHours": 48}),
    ("decrease_stream_retention_period", {"StreamName": "missing", "RetentionPeriodHours": 24}),
    ("add_tags_to_stream", {"StreamName": "missing", "Tags": {"a": "b"}}),
    ("remove_tags_from_stream", {"StreamName": "missing", "TagKeys": ["a"]}),
    ("list_tags_for_stream", {"StreamName": "missing"}),
    ("tag_resource", {"ResourceARN": MISSING, "Tags": {"a": "b"}}),
    ("untag_resource", {"ResourceARN": MISSING, "TagKeys": ["a"]}),
    ("list_tags_for_resource", {"ResourceARN": MISSING}),
    ("update_max_record_size", {"StreamARN": MISSING, "MaxRecordSizeInKiB": 2048}),
    ("enable_enhanced_monitoring", {"StreamName": "missing", "ShardLevelMetrics": ["ALL"]}),
    ("disable_enhanced_monitoring", {"StreamName": "missing", "ShardLevelMetrics": ["ALL"]}),
    ("put_resource_policy", {"ResourceARN": MISSING, "Policy": "{}"}),
    ("get_resource_policy", {"ResourceARN": MISSING}),
    ("delete_resource_policy", {"ResourceARN": MISSING}),
    ("start_stream_encryption", {"StreamName": "missing", "EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"}),
    ("stop_stream_encryption", {"StreamName": "missing", "EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"}),
]


@pytest.mark.parametrize("operation,args", NOT_FOUND, ids=[op for op, _ in NOT_FOUND])
def test_resource_not_found(kinesis, operation, args):
    assert code_of(lambda: getattr(kinesis, operation)(**args)) == "ResourceNotFoundException"


def test_shard_not_found(kinesis, stream):
    assert code_of(lambda: kinesis.get_shard_iterator(
        StreamName=stream, ShardId="shardId-000000000099", ShardIteratorType="LATEST")) == "ResourceNotFoundException"


def test_invalid_argument(kinesis, stream):
    cases = [
        # (a name alone is a 4-shard stream, as on AWS: test_boto3)
        lambda: kinesis.create_stream(StreamName="no-count", StreamModeDetails={"StreamMode": "PROVISIONED"}),
        lambda: kinesis.create_stream(StreamName="many-tags", ShardCount=1, Tags={f"k{i}": "v" for i in range(51)}),
        lambda: kinesis.describe_stream(StreamName=stream, ExclusiveStartShardId="bogus"),
        lambda: kinesis.list_streams(NextToken="bm90IGEgdG9rZW4="),
        lambda: kinesis.list_shards(StreamName=stream, ShardFilter={"Type": "AFTER_SHARD_ID"}),
        lambda: kinesis.put_record(StreamName=stream, Data=b"x", PartitionKey="p", ExplicitHashKey=str(2**128)),
        lambda: kinesis.put_records(StreamName=stream, Records=[{"Data": b"x", "PartitionKey": "p", "ExplicitHashKey": str(2**128)}]),
        lambda: kinesis.get_shard_iterator(StreamName=stream, ShardId="shardId-000000000000", ShardIteratorType="AT_SEQUENCE_NUMBER"),
        lambda: kinesis.get_shard_iterator(StreamName=stream, ShardId="shardId-000000000000", ShardIteratorType="AT_SEQUENCE_NUMBER",
                                           StartingSequenceNumber="1"),
        lambda: kinesis.get_shard_iterator(StreamName=stream, ShardId="shardId-000000000000", ShardIteratorType="AT_TIMESTAMP"),
        lambda: kinesis.get_records(ShardIterator="not-an-iterator"),
        lambda: kinesis.increase_stream_retention_period(StreamName=stream, RetentionPeriodHours=10000),
        lambda: kinesis.decrease_stream_retention_period(StreamName=stream, RetentionPeriodHours=1),
        lambda: kinesis.add_tags_to_stream(StreamName=stream, Tags={f"k{i}": "v" for i in range(51)}),
        lambda: kinesis.tag_resource(ResourceARN=f"arn:aws:kinesis:us-east-1:000000000000:stream/{stream}",
                                     Tags={f"k{i}": "v" for i in range(51)}),
        lambda: kinesis.put_resource_policy(ResourceARN=f"arn:aws:kinesis:us-east-1:000000000000:stream/{stream}",
                                            Policy="not json"),
        lambda: kinesis.start_stream_encryption(StreamName=stream, EncryptionType="NONE", KeyId="k"),
        lambda: kinesis.describe_stream_summary(StreamName="other", StreamARN=f"arn:aws:kinesis:us-east-1:000000000000:stream/{stream}"),
    ]
    codes = [(i, code_of(c)) for i, c in enumerate(cases)]
    assert codes == [(i, "InvalidArgumentException") for i in range(len(cases))]


def test_validation(endpoint, stream):
    # botocore checks some constraints itself: let the server see them.
    kinesis = boto3.client("kinesis", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="AKID",
                           aws_secret_access_key="secret",
                           config=Config(retries={"max_attempts": 1}, parameter_validation=False))
    cases = [
        lambda: kinesis.create_stream(StreamName="bad name!", ShardCount=1),
        lambda: kinesis.create_stream(StreamName="s", ShardCount=0),
        lambda: kinesis.put_record(StreamName=stream, Data=b"x" * (1024 * 1024), PartitionKey="p"),
        lambda: kinesis.put_records(StreamName=stream, Records=[]),
        lambda: kinesis.put_record(StreamName=stream, Data=b"x", PartitionKey="p", SequenceNumberForOrdering="12x"),
        lambda: kinesis.update_max_record_size(StreamARN=f"arn:aws:kinesis:us-east-1:000000000000:stream/{stream}",
                                               MaxRecordSizeInKiB=1),
        lambda: kinesis.update_account_settings(MinimumThroughputBillingCommitment={"Status": "MAYBE"}),
        lambda: kinesis.list_tags_for_stream(StreamName=stream, Limit=0),
    ]
    codes = [(i, code_of(c)) for i, c in enumerate(cases)]
    assert codes == [(i, "ValidationException") for i in range(len(cases))]


@pytest.fixture(scope="module")
def creating(tmp_path_factory):
    """A server where new streams stay CREATING for ten minutes."""
    binary = os.environ.get("SLUICE_BIN", str(ROOT / "target" / "debug" / "sluice"))
    data = tmp_path_factory.mktemp("creating")
    proc = subprocess.Popen([binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", str(data),
                             "--stream-creating-ms", "600000"], stdout=subprocess.PIPE, text=True)
    endpoint = "http://" + proc.stdout.readline().split()[-1]
    client = boto3.client("kinesis", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="AKID",
                          aws_secret_access_key="secret", config=Config(retries={"max_attempts": 1}))
    client.create_stream(StreamName="young", ShardCount=1)
    yield client
    proc.terminate()
    proc.wait(timeout=30)


IN_USE = [
    ("list_shards", {"StreamName": "young"}),
    ("create_stream", {"StreamName": "young", "ShardCount": 1}),
    ("increase_stream_retention_period", {"StreamName": "young", "RetentionPeriodHours": 48}),
    ("decrease_stream_retention_period", {"StreamName": "young", "RetentionPeriodHours": 24}),
    ("update_max_record_size", {"StreamARN": "arn:aws:kinesis:us-east-1:000000000000:stream/young", "MaxRecordSizeInKiB": 2048}),
    ("enable_enhanced_monitoring", {"StreamName": "young", "ShardLevelMetrics": ["ALL"]}),
    ("disable_enhanced_monitoring", {"StreamName": "young", "ShardLevelMetrics": ["ALL"]}),
    ("start_stream_encryption", {"StreamName": "young", "EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"}),
    ("stop_stream_encryption", {"StreamName": "young", "EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"}),
]


@pytest.mark.parametrize("operation,args", IN_USE, ids=[op for op, _ in IN_USE])
def test_resource_in_use_while_creating(creating, operation, args):
    assert code_of(lambda: getattr(creating, operation)(**args)) == "ResourceInUseException"


def test_creating_stream_message(creating):
    with pytest.raises(ClientError) as e:
        creating.list_shards(StreamName="young")
    assert e.value.response["Error"]["Message"] == \
        "Stream young under account 000000000000 not ACTIVE or UPDATING, instead in state CREATING"
    summary = creating.describe_stream_summary(StreamName="young")["StreamDescriptionSummary"]
    assert summary["StreamStatus"] == "CREATING"
    assert summary["StreamCreationTimestamp"] <= datetime.datetime.now(datetime.timezone.utc)
