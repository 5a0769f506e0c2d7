"""Firehose data format conversion: JSON records to Parquet, read back with
pyarrow and compared value by value.

There is no Glue here: the table the SchemaConfiguration names comes from
`--firehose-table DATABASE.TABLE=COLUMNS` (Hive column types). AWS's
behaviour pinned (developer guide, "Convert input data format in Amazon
Data Firehose" and "Handling errors for data format conversion"): a record
may hold several JSON objects one after the other, each a row; OpenX's
timestamp forms (ISO with `T` and `Z`, `yyyy-[M]M-[d]d HH:mm:ss[.f]`, epoch
seconds or milliseconds); Hive's TimestampFormats (Joda patterns and
`millis`); S3 compression must be UNCOMPRESSED and the buffer at least 64
MiB (128 by default); a record that does not fit the table goes to the
error output as `format-conversion-failed`, with the table named.
Types as Hive's Parquet serializer writes them (timestamps as INT96)."""
import base64
import datetime
import decimal
import json
import pathlib
import tempfile

import pyarrow.parquet as pq
import pytest
from botocore.exceptions import ClientError

from conftest import sluice
from test_firehose import S3, error_of, firehose
from test_firehose_delivery import control, objects

EVENTS = ("analytics.events=id bigint, name string, price decimal(10,2), ok boolean, score double, "
          "at timestamp, day date, tags array<string>, attrs map<string,int>, "
          "address struct<city:string,zip:int>, small tinyint, code char(3)")
LOGS = "analytics.logs=msg varchar(5), at timestamp, n int"


@pytest.fixture(scope="module")
def frozen():
    with tempfile.TemporaryDirectory() as data_dir:
        with sluice("--limits", "off", "--test-controls", "--firehose-table", EVENTS, "--firehose-table", LOGS,
                    data_dir=data_dir) as (_, endpoint):
            control(endpoint, "clock", {"freeze": True})

            def advance(ms):
                return control(endpoint, "clock", {"advanceMs": ms})["nowMs"]

            yield endpoint, pathlib.Path(data_dir), advance


def conversion(table, deserializer, compression=None, **parquet):
    serde = dict(parquet)
    if compression:
        serde["Compression"] = compression
    return {
        "SchemaConfiguration": {"DatabaseName": "analytics", "TableName": table,
                                "RoleARN": "arn:aws:iam::000000000000:role/firehose"},
        "InputFormatConfiguration": {"Deserializer": deserializer},
        "OutputFormatConfiguration": {"Serializer": {"ParquetSerDe": serde}},
    }


def parquet_objects(data_dir, bucket):
    import io
    return {k: pq.ParquetFile(io.BytesIO(v)) for k, v in objects(data_dir, bucket).items()
            if not k.startswith("errors/")}


def utc(*args):
    return datetime.datetime(*args, tzinfo=datetime.timezone.utc)


def test_openx_json_to_snappy_parquet_with_every_hive_type(frozen):
    endpoint, data_dir, advance = frozen
    f = firehose(endpoint)
    f.create_delivery_stream(DeliveryStreamName="to-parquet", ExtendedS3DestinationConfiguration=dict(
        S3, BucketARN="arn:aws:s3:::lake", Prefix="events/", ErrorOutputPrefix="errors/!{firehose:error-output-type}/",
        BufferingHints={"SizeInMBs": 64, "IntervalInSeconds": 60},
        DataFormatConversionConfiguration=conversion("events", {"OpenXJsonSerDe": {
            "ColumnToJsonKeyMappings": {"small": "tiny.value"}, "ConvertDotsInJsonKeysToUnderscores": False}})))
    described = f.describe_delivery_stream(DeliveryStreamName="to-parquet")["DeliveryStreamDescription"]
    dest = described["Destinations"][0]["ExtendedS3DestinationDescription"]
    assert dest["DataFormatConversionConfiguration"]["OutputFormatConfiguration"]["Serializer"]["ParquetSerDe"] == {}
    full = {"ID": 1, "Name": "ada", "price": "12.345", "ok": True, "score": 2.5, "at": "2017-02-07T15:13:01.39256Z",
            "day": "2024-02-29", "tags": ["a", "b"], "attrs": {"x": 1, "y": 2}, "address": {"City": "Paris", "zip": 75001},
            "tiny.value": 7, "code": "ab", "ignored": {"deep": [1, 2]}}
    sparse = {"id": "2", "at": 1518033528, "tags": [], "attrs": {}, "address": None, "price": 0.5}
    two = json.dumps({"id": 3, "at": "2017-2-7 15:13:01.1", "tags": ["z", None]}) + \
        json.dumps({"id": 4, "at": 1518033528123, "ok": "false"})
    bad_type = {"id": "not a number"}
    records = [json.dumps(full), json.dumps(sparse), two, bad_type, "not json", "[1, 2]"]
    f.put_record_batch(DeliveryStreamName="to-parquet",
                       Records=[{"Data": (r if isinstance(r, str) else json.dumps(r)).encode()} for r in records])
    advance(60_000)
    [(key, file)] = parquet_objects(data_dir, "lake").items()
    assert key.startswith("events/") and not key.endswith(".parquet"), key
    assert file.metadata.row_group(0).column(0).compression == "SNAPPY"
    schema = file.schema_arrow
    assert str(schema.field("at").type) == "timestamp[ns]"
    assert file.schema.column(schema.get_field_index("at")).physical_type == "INT96"
    rows = file.read().to_pylist()
    assert [r["id"] for r in rows] == [1, 2, 3, 4]
    assert rows[0] == {
        "id": 1, "name": "ada", "price": decimal.Decimal("12.35"), "ok": True, "score": 2.5,
        "at": datetime.datetime(2017, 2, 7, 15, 13, 1, 392560), "day": datetime.date(2024, 2, 29),
        "tags": ["a", "b"], "attrs": [("x", 1), ("y", 2)], "address": {"city": "Paris", "zip": 75001},
        "small": 7, "code": "ab "}
    assert rows[1]["at"] == datetime.datetime(2018, 2, 7, 19, 58, 48)
    assert rows[1]["tags"] == [] and rows[1]["attrs"] == [] and rows[1]["address"] is None
    assert rows[1]["name"] is None and rows[1]["price"] == decimal.Decimal("0.50")
    assert rows[2]["tags"] == ["z", None]
    assert rows[2]["at"] == datetime.datetime(2017, 2, 7, 15, 13, 1, 100000)
    assert rows[3]["at"] == datetime.datetime(2018, 2, 7, 19, 58, 48, 123000) and rows[3]["ok"] is False
    errors = {k: v for k, v in objects(data_dir, "lake").items() if k.startswith("errors/")}
    [(error_key, body)] = errors.items()
    assert error_key.startswith("errors/format-conversion-failed/")
    lines = [json.loads(line) for line in body.splitlines()]
    assert [base64.b64decode(e["rawData"]) for e in lines] == [json.dumps(bad_type).encode(), b"not json", b"[1, 2]"]
    for e in lines:
        assert e["lastErrorCode"] == "DataFormatConversion.MalformedData"
        assert e["dataCatalogTable"]["databaseName"] == "analytics"
        assert e["dataCatalogTable"]["tableName"] == "events"
        assert e["attemptsMade"] == 1 and e["lastErrorMessage"]
    f.delete_delivery_stream(DeliveryStreamName="to-parquet")


@pytest.mark.parametrize("compression", ["GZIP", "UNCOMPRESSED"])
def test_hive_json_with_timestamp_formats(frozen, compression):
    endpoint, data_dir, advance = frozen
    f = firehose(endpoint)
    name = f"hive-{compression.lower()}"
    f.create_delivery_stream(DeliveryStreamName=name, ExtendedS3DestinationConfiguration=dict(
        S3, BucketARN=f"arn:aws:s3:::{name}", ErrorOutputPrefix="errors/",
        DataFormatConversionConfiguration=conversion(
            "logs", {"HiveJsonSerDe": {"TimestampFormats": ["millis", "dd/MM/yyyy HH:mm"]}}, compression,
            WriterVersion="V2", EnableDictionaryCompression=True)))
    dest = f.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]["Destinations"][0]
    assert dest["ExtendedS3DestinationDescription"]["BufferingHints"] == {"SizeInMBs": 128, "IntervalInSeconds": 300}
    records = [{"MSG": "hello world", "at": 1518033528123, "n": 1}, {"msg": "hi", "at": "07/02/2017 15:13", "n": 2},
               {"msg": "bad", "at": "2017-02-07 15:13:01", "n": 3}]
    f.put_record_batch(DeliveryStreamName=name, Records=[{"Data": json.dumps(r).encode()} for r in records])
    advance(300_000)
    [(key, file)] = parquet_objects(data_dir, name).items()
    assert file.metadata.row_group(0).column(0).compression == compression
    assert file.read().to_pylist() == [
        {"msg": "hello", "at": datetime.datetime(2018, 2, 7, 19, 58, 48, 123000), "n": 1},
        {"msg": "hi", "at": datetime.datetime(2017, 2, 7, 15, 13), "n": 2}]
    [(error_key, body)] = [(k, v) for k, v in objects(data_dir, name).items() if k.startswith("errors/")]
    assert base64.b64decode(json.loads(body)["rawData"]) == json.dumps(records[2]).encode()
    f.delete_delivery_stream(DeliveryStreamName=name)


def test_row_groups_bound_memory_for_a_large_object(frozen):
    endpoint, data_dir, advance = frozen
    f = firehose(endpoint)
    f.create_delivery_stream(DeliveryStreamName="big-parquet", ExtendedS3DestinationConfiguration=dict(
        S3, BucketARN="arn:aws:s3:::big-parquet", BufferingHints={"SizeInMBs": 64, "IntervalInSeconds": 60},
        DataFormatConversionConfiguration=conversion("events", {"HiveJsonSerDe": {}}, "UNCOMPRESSED")))
    pad = "x" * 2000
    for batch in range(20):
        f.put_record_batch(DeliveryStreamName="big-parquet", Records=[
            {"Data": json.dumps({"name": pad, "id": batch * 500 + i}).encode()} for i in range(500)])
    advance(60_000)
    [(key, file)] = parquet_objects(data_dir, "big-parquet").items()
    assert file.metadata.num_rows == 10_000
    # Row groups of at most 16 MiB of values, whatever BlockSizeBytes says.
    assert file.metadata.num_row_groups == 2
    assert file.read(columns=["id"]).column("id").to_pylist() == list(range(10_000))
    f.delete_delivery_stream(DeliveryStreamName="big-parquet")


def test_conversion_requirements_and_what_sluice_cannot_convert(frozen):
    endpoint, _, _ = frozen
    f = firehose(endpoint)
    base = dict(S3, BucketARN="arn:aws:s3:::refused")
    hive = {"HiveJsonSerDe": {}}
    for extra, says in [({"CompressionFormat": "GZIP"}, "UNCOMPRESSED"),
                        ({"BufferingHints": {"SizeInMBs": 5, "IntervalInSeconds": 60}}, "at least 64")]:
        with pytest.raises(ClientError) as e:
            f.create_delivery_stream(DeliveryStreamName="refused", ExtendedS3DestinationConfiguration=dict(
                base, DataFormatConversionConfiguration=conversion("logs", hive), **extra))
        code, message = error_of(e)
        assert code == "InvalidArgumentException" and says in message, message
    # Accepted as configuration; its records are refused, never accepted
    # and left undelivered: a table Sluice's configuration does not have,
    # and ORC.
    orc = conversion("logs", hive)
    orc["OutputFormatConfiguration"] = {"Serializer": {"OrcSerDe": {}}}
    for name, conf, says in [("no-table", conversion("nowhere", hive), "analytics.nowhere"),
                             ("orc", orc, "ORC")]:
        f.create_delivery_stream(DeliveryStreamName=name, ExtendedS3DestinationConfiguration=dict(
            base, DataFormatConversionConfiguration=conf))
        with pytest.raises(ClientError) as e:
            f.put_record(DeliveryStreamName=name, Record={"Data": b"{}"})
        code, message = error_of(e)
        assert code == "InvalidArgumentException" and says in message, message
        f.delete_delivery_stream(DeliveryStreamName=name)
    # Turned off, the records are delivered as they are.
    off = conversion("logs", hive)
    off["Enabled"] = False
    f.create_delivery_stream(DeliveryStreamName="off", ExtendedS3DestinationConfiguration=dict(
        base, DataFormatConversionConfiguration=off, CompressionFormat="GZIP"))
    assert f.put_record(DeliveryStreamName="off", Record={"Data": b"{}"})["RecordId"]
    f.delete_delivery_stream(DeliveryStreamName="off")


def test_a_bad_table_setting_stops_the_server_with_a_reason():
    import os
    import subprocess
    for spec, says in [("analytics.t", "DATABASE.TABLE=COLUMNS"), ("t=id int", "DATABASE.TABLE"),
                       ("a.t=id uuid", "uuid is not a Hive type"), ("a.t=id int, id int", "twice")]:
        with tempfile.TemporaryDirectory() as data_dir:
            run = subprocess.run([os.environ.get("SLUICE_BIN", "target/debug/sluice"), "serve", "--listen",
                                  "127.0.0.1:0", "--data-dir", data_dir, "--firehose-table", spec],
                                 capture_output=True, text=True, timeout=30)
        assert run.returncode == 2, run
        assert says in run.stderr, run.stderr
