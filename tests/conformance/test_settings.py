"""boto3: tags, retention, record size, limits, account settings, enhanced
monitoring, resource policies and encryption."""
import pytest
from botocore.exceptions import ClientError


def error_of(excinfo):
    e = excinfo.value.response["Error"]
    return e["Code"], e["Message"]


def arn(name):
    return f"arn:aws:kinesis:us-east-1:000000000000:stream/{name}"


def test_stream_tags(kinesis, stream):
    kinesis.add_tags_to_stream(StreamName=stream, Tags={"team": "data", "env": "test"})
    assert kinesis.list_tags_for_stream(StreamName=stream)["Tags"] == [{"Key": "env", "Value": "test"}, {"Key": "team", "Value": "data"}]
    page = kinesis.list_tags_for_stream(StreamName=stream, Limit=1)
    assert page["HasMoreTags"] and page["Tags"] == [{"Key": "env", "Value": "test"}]
    page = kinesis.list_tags_for_stream(StreamName=stream, ExclusiveStartTagKey="env")
    assert not page["HasMoreTags"] and page["Tags"] == [{"Key": "team", "Value": "data"}]
    kinesis.remove_tags_from_stream(StreamName=stream, TagKeys=["env"])
    assert kinesis.list_tags_for_stream(StreamName=stream)["Tags"] == [{"Key": "team", "Value": "data"}]
    with pytest.raises(ClientError) as e:
        kinesis.add_tags_to_stream(StreamName=stream, Tags={f"k{i}": "v" for i in range(50)})
    assert error_of(e) == ("InvalidArgumentException", f"Failed to add tags to stream {stream} under account 000000000000 because a given stream cannot have more than 50 tags associated with it.")
    # The characters AWS refuses, in its words (kinesalite's tests, recorded against AWS).
    with pytest.raises(ClientError) as e:
        kinesis.add_tags_to_stream(StreamName=stream, Tags={"a;b": "v"})
    assert error_of(e) == ("InvalidArgumentException", "Some tags contain invalid characters. Valid characters: Unicode letters, digits, white space, _ . / = + - % @.")
    with pytest.raises(ClientError) as e:
        kinesis.add_tags_to_stream(StreamName=stream, Tags={"k": "50%"})
    assert error_of(e) == ("InvalidArgumentException", f"Failed to add tags to stream {stream} under account 000000000000 because some tags contained illegal characters. The allowed characters are Unicode letters, white-spaces, '_',',','/','=','+','-','@'.")
    with pytest.raises(ClientError) as e:
        kinesis.remove_tags_from_stream(StreamName=stream, TagKeys=["a%"])
    assert error_of(e)[1].startswith(f"Failed to remove tags from stream {stream} under account")
    kinesis.add_tags_to_stream(StreamName=stream, Tags={"owner": "test@company.com", "path": "a/b=c+d-e_f.g:h", "name": "Zoë ünïcode"})
    assert {t["Key"] for t in kinesis.list_tags_for_stream(StreamName=stream)["Tags"]} == {"team", "owner", "path", "name"}


def test_resource_tags(kinesis, stream):
    kinesis.tag_resource(ResourceARN=arn(stream), Tags={"a": "1"})
    assert kinesis.list_tags_for_resource(ResourceARN=arn(stream))["Tags"] == [{"Key": "a", "Value": "1"}]
    kinesis.untag_resource(ResourceARN=arn(stream), TagKeys=["a"])
    assert kinesis.list_tags_for_resource(ResourceARN=arn(stream))["Tags"] == []
    with pytest.raises(ClientError) as e:
        kinesis.list_tags_for_resource(ResourceARN=arn("missing"))
    assert error_of(e)[0] == "ResourceNotFoundException"


def test_tags_given_at_creation(kinesis):
    kinesis.create_stream(StreamName="tagged", ShardCount=1, Tags={"owner": "me"})
    assert kinesis.list_tags_for_stream(StreamName="tagged")["Tags"] == [{"Key": "owner", "Value": "me"}]
    kinesis.delete_stream(StreamName="tagged")


def test_retention_period_rules(kinesis, stream):
    kinesis.increase_stream_retention_period(StreamName=stream, RetentionPeriodHours=48)
    assert kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["RetentionPeriodHours"] == 48
    with pytest.raises(ClientError) as e:
        kinesis.increase_stream_retention_period(StreamName=stream, RetentionPeriodHours=24)
    assert error_of(e) == ("InvalidArgumentException", f"Requested retention period (24 hours) for stream {stream} can not be shorter than existing retention period (48 hours). Use DecreaseRetentionPeriod API.")
    with pytest.raises(ClientError) as e:
        kinesis.decrease_stream_retention_period(StreamName=stream, RetentionPeriodHours=72)
    assert error_of(e)[0] == "InvalidArgumentException"
    with pytest.raises(ClientError) as e:
        kinesis.decrease_stream_retention_period(StreamName=stream, RetentionPeriodHours=1)
    assert error_of(e) == ("InvalidArgumentException", "Minimum allowed retention period is 24 hours. Requested retention period (1 hours) is too short.")
    kinesis.decrease_stream_retention_period(StreamName=stream, RetentionPeriodHours=24)


def test_max_record_size_is_enforced(kinesis, stream):
    big = b"x" * (2 * 1024 * 1024)
    with pytest.raises(ClientError) as e:
        kinesis.put_record(StreamName=stream, Data=big, PartitionKey="k")
    assert error_of(e)[0] == "ValidationException"
    kinesis.update_max_record_size(StreamARN=arn(stream), MaxRecordSizeInKiB=4096)
    assert kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["MaxRecordSizeInKiB"] == 4096
    kinesis.put_record(StreamName=stream, Data=big, PartitionKey="k")


def test_describe_limits(kinesis, stream):
    limits = kinesis.describe_limits()
    assert limits["ShardLimit"] == 500 and limits["OnDemandStreamCountLimit"] == 50
    assert limits["OpenShardCount"] >= 2


def test_account_settings(kinesis):
    assert kinesis.describe_account_settings()["MinimumThroughputBillingCommitment"]["Status"] == "DISABLED"
    on = kinesis.update_account_settings(MinimumThroughputBillingCommitment={"Status": "ENABLED"})["MinimumThroughputBillingCommitment"]
    assert on["Status"] == "ENABLED" and "StartedAt" in on and "EarliestAllowedEndAt" in on
    off = kinesis.update_account_settings(MinimumThroughputBillingCommitment={"Status": "DISABLED"})["MinimumThroughputBillingCommitment"]
    assert off["Status"] == "ENABLED_UNTIL_EARLIEST_ALLOWED_END"


def test_enhanced_monitoring(kinesis, stream):
    r = kinesis.enable_enhanced_monitoring(StreamName=stream, ShardLevelMetrics=["IncomingBytes"])
    assert r["CurrentShardLevelMetrics"] == [] and r["DesiredShardLevelMetrics"] == ["IncomingBytes"]
    r = kinesis.enable_enhanced_monitoring(StreamName=stream, ShardLevelMetrics=["ALL"])
    assert len(r["DesiredShardLevelMetrics"]) == 7
    r = kinesis.disable_enhanced_monitoring(StreamName=stream, ShardLevelMetrics=["ALL"])
    assert r["DesiredShardLevelMetrics"] == []
    d = kinesis.describe_stream(StreamName=stream)["StreamDescription"]
    assert d["EnhancedMonitoring"] == [{"ShardLevelMetrics": []}]


def test_resource_policies(kinesis, stream):
    policy = '{"Version":"2012-10-17","Statement":[]}'
    assert kinesis.get_resource_policy(ResourceARN=arn(stream))["Policy"] == "{}"
    kinesis.put_resource_policy(ResourceARN=arn(stream), Policy=policy)
    assert kinesis.get_resource_policy(ResourceARN=arn(stream))["Policy"] == policy
    kinesis.delete_resource_policy(ResourceARN=arn(stream))
    assert kinesis.get_resource_policy(ResourceARN=arn(stream))["Policy"] == "{}"
    # AWS: deleting a policy that is not there is ResourceNotFoundException
    # (issue #15); the stream itself is there.
    with pytest.raises(ClientError) as e:
        kinesis.delete_resource_policy(ResourceARN=arn(stream))
    assert error_of(e) == ("ResourceNotFoundException", f"No resource policy found for resource {arn(stream)}.")
    with pytest.raises(ClientError) as e:
        kinesis.put_resource_policy(ResourceARN=arn(stream), Policy="not json")
    assert error_of(e)[0] == "InvalidArgumentException"
    with pytest.raises(ClientError) as e:
        kinesis.get_resource_policy(ResourceARN=arn("missing"))
    assert error_of(e)[0] == "ResourceNotFoundException"


def test_stream_encryption(kinesis, stream):
    kinesis.start_stream_encryption(StreamName=stream, EncryptionType="KMS", KeyId="alias/aws/kinesis")
    assert kinesis.describe_stream(StreamName=stream)["StreamDescription"]["EncryptionType"] == "KMS"
    assert kinesis.put_record(StreamName=stream, Data=b"x", PartitionKey="k")["EncryptionType"] == "KMS"
    kinesis.stop_stream_encryption(StreamName=stream, EncryptionType="KMS", KeyId="alias/aws/kinesis")
    assert kinesis.describe_stream(StreamName=stream)["StreamDescription"]["EncryptionType"] == "NONE"
