"""boto3 `firehose` against Sluice's Firehose control plane (issue #16, first
part): delivery streams per account and region, their destinations
described as AWS describes them, versions, tags and encryption state.
Delivery: test_firehose_delivery.py."""
import os
import subprocess
import tempfile

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import BINARY, sluice


def firehose(endpoint, region="us-east-1", access_key="AKIDEXAMPLE"):
    return boto3.client("firehose", endpoint_url=endpoint, region_name=region, aws_access_key_id=access_key,
                        aws_secret_access_key="secret", config=Config(retries={"max_attempts": 1}))


def error_of(excinfo):
    e = excinfo.value.response["Error"]
    return e["Code"], e["Message"]


S3 = {"RoleARN": "arn:aws:iam::000000000000:role/firehose", "BucketARN": "arn:aws:s3:::bucket"}


def test_lifecycle_describe_list_and_delete(endpoint):
    f = firehose(endpoint)
    arn = f.create_delivery_stream(DeliveryStreamName="life", ExtendedS3DestinationConfiguration=dict(
        S3, Prefix="logs/", BufferingHints={"SizeInMBs": 1}))["DeliveryStreamARN"]
    assert arn == "arn:aws:firehose:us-east-1:000000000000:deliverystream/life"
    d = f.describe_delivery_stream(DeliveryStreamName="life")["DeliveryStreamDescription"]
    assert d["DeliveryStreamStatus"] == "ACTIVE"
    assert d["DeliveryStreamType"] == "DirectPut"
    assert d["VersionId"] == "1"
    assert d["DeliveryStreamEncryptionConfiguration"] == {"Status": "DISABLED"}
    assert d["HasMoreDestinations"] is False
    [dest] = d["Destinations"]
    assert dest["DestinationId"] == "destinationId-000000000001"
    ext = dest["ExtendedS3DestinationDescription"]
    # AWS's defaults, filled in (as an AWS answer recorded in
    # turbot/steampipe-plugin-aws#769 shows them).
    assert ext["BufferingHints"] == {"SizeInMBs": 1, "IntervalInSeconds": 300}
    assert ext["CompressionFormat"] == "UNCOMPRESSED"
    assert ext["EncryptionConfiguration"] == {"NoEncryptionConfig": "NoEncryption"}
    assert ext["CloudWatchLoggingOptions"] == {"Enabled": False}
    assert ext["S3BackupMode"] == "Disabled"
    assert ext["Prefix"] == "logs/"
    assert dest["S3DestinationDescription"]["BucketARN"] == "arn:aws:s3:::bucket"
    # Paging past the one destination.
    d = f.describe_delivery_stream(DeliveryStreamName="life",
                                   ExclusiveStartDestinationId="destinationId-000000000001")
    assert d["DeliveryStreamDescription"]["Destinations"] == []
    with pytest.raises(ClientError) as e:
        f.create_delivery_stream(DeliveryStreamName="life", S3DestinationConfiguration=S3)
    assert error_of(e) == ("ResourceInUseException", "Firehose life under accountId 000000000000 already exists")
    assert "life" in f.list_delivery_streams()["DeliveryStreamNames"]
    f.delete_delivery_stream(DeliveryStreamName="life")
    with pytest.raises(ClientError) as e:
        f.describe_delivery_stream(DeliveryStreamName="life")
    assert error_of(e) == ("ResourceNotFoundException", "Firehose life under account 000000000000 not found.")
    with pytest.raises(ClientError) as e:
        f.delete_delivery_stream(DeliveryStreamName="life")
    assert error_of(e)[0] == "ResourceNotFoundException"


def test_list_filters_and_pages(endpoint):
    f = firehose(endpoint, region="eu-central-1")
    for name in ["a", "b", "c"]:
        f.create_delivery_stream(DeliveryStreamName=name, S3DestinationConfiguration=S3)
    # The source must exist (Firehose reads it from LATEST at creation).
    from conftest import client
    kinesis = client(endpoint, region="eu-central-1")
    kinesis.create_stream(StreamName="src", ShardCount=1)
    f.create_delivery_stream(DeliveryStreamName="k", DeliveryStreamType="KinesisStreamAsSource",
                             KinesisStreamSourceConfiguration={
                                 "KinesisStreamARN": "arn:aws:kinesis:eu-central-1:000000000000:stream/src",
                                 "RoleARN": S3["RoleARN"]},
                             S3DestinationConfiguration=S3)
    page = f.list_delivery_streams(Limit=2)
    assert page == {"DeliveryStreamNames": ["a", "b"], "HasMoreDeliveryStreams": True,
                    "ResponseMetadata": page["ResponseMetadata"]}
    page = f.list_delivery_streams(ExclusiveStartDeliveryStreamName="b")
    assert page["DeliveryStreamNames"] == ["c", "k"] and not page["HasMoreDeliveryStreams"]
    assert f.list_delivery_streams(DeliveryStreamType="KinesisStreamAsSource")["DeliveryStreamNames"] == ["k"]
    k = f.describe_delivery_stream(DeliveryStreamName="k")["DeliveryStreamDescription"]
    src = k["Source"]["KinesisStreamSourceDescription"]
    assert src["KinesisStreamARN"].endswith(":stream/src") and "DeliveryStartTimestamp" in src
    # Another region does not see them.
    assert firehose(endpoint, region="eu-west-3").list_delivery_streams()["DeliveryStreamNames"] == []
    for name in ["a", "b", "c", "k"]:
        f.delete_delivery_stream(DeliveryStreamName=name)
    kinesis.delete_stream(StreamName="src")


def test_destinations_sluice_does_not_deliver_to_are_refused(endpoint):
    f = firehose(endpoint)
    with pytest.raises(ClientError) as e:
        f.create_delivery_stream(DeliveryStreamName="splunk", SplunkDestinationConfiguration={
            "HECEndpoint": "https://splunk", "HECEndpointType": "Raw", "HECToken": "t",
            "S3Configuration": S3})
    assert error_of(e) == ("InvalidArgumentException",
                           "Sluice delivers to S3, extended S3 and HTTP endpoint destinations; "
                           "SplunkDestination is not one of them.")
    with pytest.raises(ClientError) as e:
        f.create_delivery_stream(DeliveryStreamName="two", S3DestinationConfiguration=S3,
                                 ExtendedS3DestinationConfiguration=S3)
    assert error_of(e) == ("InvalidArgumentException",
                           "Exactly one destination configuration is supported for a Firehose")
    with pytest.raises(ClientError) as e:
        f.create_delivery_stream(DeliveryStreamName="none")
    assert error_of(e)[0] == "InvalidArgumentException"
    assert "splunk" not in f.list_delivery_streams()["DeliveryStreamNames"]


def test_update_destination_checks_the_version(endpoint):
    f = firehose(endpoint)
    f.create_delivery_stream(DeliveryStreamName="upd", S3DestinationConfiguration=S3)
    f.update_destination(DeliveryStreamName="upd", CurrentDeliveryStreamVersionId="1",
                         DestinationId="destinationId-000000000001",
                         ExtendedS3DestinationUpdate={"Prefix": "new/", "CompressionFormat": "GZIP"})
    d = f.describe_delivery_stream(DeliveryStreamName="upd")["DeliveryStreamDescription"]
    assert d["VersionId"] == "2" and "LastUpdateTimestamp" in d
    ext = d["Destinations"][0]["ExtendedS3DestinationDescription"]
    assert (ext["Prefix"], ext["CompressionFormat"]) == ("new/", "GZIP")
    with pytest.raises(ClientError) as e:
        f.update_destination(DeliveryStreamName="upd", CurrentDeliveryStreamVersionId="1",
                             DestinationId="destinationId-000000000001", S3DestinationUpdate={"Prefix": "x/"})
    assert error_of(e)[0] == "ConcurrentModificationException"
    with pytest.raises(ClientError) as e:
        f.update_destination(DeliveryStreamName="upd", CurrentDeliveryStreamVersionId="2",
                             DestinationId="destinationId-000000000001",
                             HttpEndpointDestinationUpdate={"RetryOptions": {"DurationInSeconds": 10}})
    assert error_of(e)[0] == "InvalidArgumentException"
    # Members not given keep their values, nested ones too (AWS: "If any of
    # the parameters are not specified in the call, the existing values are
    # retained").
    f.update_destination(DeliveryStreamName="upd", CurrentDeliveryStreamVersionId="2",
                         DestinationId="destinationId-000000000001",
                         ExtendedS3DestinationUpdate={"CloudWatchLoggingOptions": {"Enabled": True, "LogGroupName": "g"}})
    f.update_destination(DeliveryStreamName="upd", CurrentDeliveryStreamVersionId="3",
                         DestinationId="destinationId-000000000001",
                         ExtendedS3DestinationUpdate={"CloudWatchLoggingOptions": {"LogStreamName": "s"}})
    ext = f.describe_delivery_stream(DeliveryStreamName="upd")["DeliveryStreamDescription"]["Destinations"][0][
        "ExtendedS3DestinationDescription"]
    assert ext["CloudWatchLoggingOptions"] == {"Enabled": True, "LogGroupName": "g", "LogStreamName": "s"}
    assert ext["Prefix"] == "new/"
    # A backup needs its bucket the first time.
    with pytest.raises(ClientError) as e:
        f.update_destination(DeliveryStreamName="upd", CurrentDeliveryStreamVersionId="4",
                             DestinationId="destinationId-000000000001",
                             ExtendedS3DestinationUpdate={"S3BackupUpdate": {"Prefix": "b/"}})
    assert error_of(e)[0] == "InvalidArgumentException"
    f.delete_delivery_stream(DeliveryStreamName="upd")


def test_http_endpoint_destinations(endpoint):
    f = firehose(endpoint)
    f.create_delivery_stream(DeliveryStreamName="http", HttpEndpointDestinationConfiguration={
        "EndpointConfiguration": {"Url": "https://example.com/in", "Name": "in", "AccessKey": "secret-key"},
        "S3Configuration": S3})
    http = f.describe_delivery_stream(DeliveryStreamName="http")["DeliveryStreamDescription"]["Destinations"][0][
        "HttpEndpointDestinationDescription"]
    # The access key is never described.
    assert http["EndpointConfiguration"] == {"Url": "https://example.com/in", "Name": "in"}
    assert http["RetryOptions"] == {"DurationInSeconds": 300}
    assert http["S3BackupMode"] == "FailedDataOnly"
    assert http["RequestConfiguration"] == {"ContentEncoding": "NONE"}
    assert http["S3DestinationDescription"]["BucketARN"] == "arn:aws:s3:::bucket"
    f.delete_delivery_stream(DeliveryStreamName="http")


def test_what_aws_requires_together(endpoint):
    f = firehose(endpoint)
    # Dynamic partitioning needs an error prefix (AWS's dynamic-partitioning
    # error-handling page).
    with pytest.raises(ClientError) as e:
        f.create_delivery_stream(DeliveryStreamName="dp", ExtendedS3DestinationConfiguration=dict(
            S3, DynamicPartitioningConfiguration={"Enabled": True}))
    assert error_of(e)[0] == "InvalidArgumentException"
    with pytest.raises(ClientError) as e:
        f.create_delivery_stream(DeliveryStreamName="ks", DeliveryStreamType="KinesisStreamAsSource",
                                 S3DestinationConfiguration=S3)
    assert error_of(e)[0] == "InvalidArgumentException"
    # Prefix expressions are checked when configured.
    with pytest.raises(ClientError) as e:
        f.create_delivery_stream(DeliveryStreamName="px", S3DestinationConfiguration=dict(S3, Prefix="a/!{nope:x}/"))
    assert error_of(e) == ("InvalidArgumentException", "Invalid prefix: the prefix expression !{nope:x} is not supported.")
    # AWS's rule and words, typo included (terraform-provider-aws#13416 and
    # serverless#6015 quote the answer).
    with pytest.raises(ClientError) as e:
        f.create_delivery_stream(DeliveryStreamName="px", ExtendedS3DestinationConfiguration=dict(
            S3, Prefix="dt=!{timestamp:yyyy'-'MM'-'dd}/"))
    assert error_of(e) == ("InvalidArgumentException",
                           "Ths supplied prefix(es) do not satisfy the following constraint: "
                           "ErrorOutputPrefix cannot be null or empty when Prefix contains expressions")
    f.create_delivery_stream(DeliveryStreamName="px", ExtendedS3DestinationConfiguration=dict(
        S3, Prefix="dt=!{timestamp:yyyy'-'MM'-'dd}/", ErrorOutputPrefix="err/!{firehose:error-output-type}/"))
    with pytest.raises(ClientError) as e:
        f.update_destination(DeliveryStreamName="px", CurrentDeliveryStreamVersionId="1",
                             DestinationId="destinationId-000000000001",
                             ExtendedS3DestinationUpdate={"ErrorOutputPrefix": ""})
    assert error_of(e)[1].endswith("ErrorOutputPrefix cannot be null or empty when Prefix contains expressions")
    with pytest.raises(ClientError) as e:
        f.update_destination(DeliveryStreamName="px", CurrentDeliveryStreamVersionId="1",
                             DestinationId="destinationId-000000000001",
                             ExtendedS3DestinationUpdate={"Prefix": "!{timestamp:yyyy"})
    assert error_of(e)[0] == "InvalidArgumentException"
    f.delete_delivery_stream(DeliveryStreamName="px")


def test_tags_and_encryption(endpoint):
    f = firehose(endpoint)
    f.create_delivery_stream(DeliveryStreamName="tagged", S3DestinationConfiguration=S3,
                             Tags=[{"Key": "b", "Value": "2"}])
    f.tag_delivery_stream(DeliveryStreamName="tagged", Tags=[{"Key": "a", "Value": "1"}])
    tags = f.list_tags_for_delivery_stream(DeliveryStreamName="tagged")
    assert tags["Tags"] == [{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}] and not tags["HasMoreTags"]
    page = f.list_tags_for_delivery_stream(DeliveryStreamName="tagged", Limit=1)
    assert page["Tags"] == [{"Key": "a", "Value": "1"}] and page["HasMoreTags"]
    f.untag_delivery_stream(DeliveryStreamName="tagged", TagKeys=["a"])
    assert f.list_tags_for_delivery_stream(DeliveryStreamName="tagged")["Tags"] == [{"Key": "b", "Value": "2"}]
    with pytest.raises(ClientError) as e:
        f.tag_delivery_stream(DeliveryStreamName="tagged", Tags=[{"Key": f"k{i}", "Value": "v"} for i in range(50)])
    assert error_of(e)[0] == "LimitExceededException"
    # With an AWS-owned key, a KeyARN given is not the key used.
    f.start_delivery_stream_encryption(DeliveryStreamName="tagged", DeliveryStreamEncryptionConfigurationInput={
        "KeyType": "AWS_OWNED_CMK", "KeyARN": "arn:aws:kms:us-east-1:000000000000:key/k"})
    enc = f.describe_delivery_stream(DeliveryStreamName="tagged")["DeliveryStreamDescription"][
        "DeliveryStreamEncryptionConfiguration"]
    assert enc == {"KeyType": "AWS_OWNED_CMK", "Status": "ENABLED"}
    with pytest.raises(ClientError) as e:
        f.start_delivery_stream_encryption(DeliveryStreamName="tagged",
                                           DeliveryStreamEncryptionConfigurationInput={"KeyType": "CUSTOMER_MANAGED_CMK"})
    assert error_of(e)[0] == "InvalidArgumentException"
    f.stop_delivery_stream_encryption(DeliveryStreamName="tagged")
    enc = f.describe_delivery_stream(DeliveryStreamName="tagged")["DeliveryStreamDescription"][
        "DeliveryStreamEncryptionConfiguration"]
    assert enc == {"Status": "DISABLED"}
    f.delete_delivery_stream(DeliveryStreamName="tagged")


def test_validation_in_the_models_words(endpoint):
    f = firehose(endpoint)
    with pytest.raises(ClientError) as e:
        f.create_delivery_stream(DeliveryStreamName="bad name", S3DestinationConfiguration=S3)
    assert error_of(e) == ("ValidationException",
                           "1 validation error detected: Value 'bad name' at 'deliveryStreamName' failed to satisfy "
                           "constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+")


def test_delivery_streams_survive_a_restart():
    with tempfile.TemporaryDirectory() as data:
        with sluice(data_dir=data) as (_, endpoint):
            firehose(endpoint).create_delivery_stream(DeliveryStreamName="kept", S3DestinationConfiguration=S3)
        with sluice(data_dir=data) as (_, endpoint):
            d = firehose(endpoint).describe_delivery_stream(DeliveryStreamName="kept")["DeliveryStreamDescription"]
            assert d["DeliveryStreamARN"].endswith(":deliverystream/kept")


def test_the_aws_cli(endpoint):
    aws = os.path.join(os.path.dirname(os.path.realpath(__import__("sys").executable)), "aws")
    env = dict(os.environ, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="us-east-1")
    run = lambda *args: subprocess.run([aws, "--endpoint-url", endpoint, "firehose", *args], env=env,
                                       check=True, capture_output=True, text=True).stdout
    run("create-delivery-stream", "--delivery-stream-name", "cli",
        "--s3-destination-configuration", "RoleARN=arn:aws:iam::000000000000:role/r,BucketARN=arn:aws:s3:::b")
    assert "cli" in run("list-delivery-streams")
    assert '"DeliveryStreamStatus": "ACTIVE"' in run("describe-delivery-stream", "--delivery-stream-name", "cli")
    run("delete-delivery-stream", "--delivery-stream-name", "cli")
