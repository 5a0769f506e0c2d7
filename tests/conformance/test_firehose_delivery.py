"""Firehose delivery through boto3 against a real `sluice serve`: Direct PUT
records buffered by size and by time on the frozen virtual clock, delivered
as objects into a bucket that is a directory under the data dir
(`<data-dir>/s3/<bucket>/<key>`), compressed, and never lost across kill -9.

AWS's behaviour pinned here (KINESIS-FACTS.md, Firehose; AWS's developer
guide, "Configure Amazon S3 object name format" and "Understand data
delivery"): records are concatenated with no delimiter; an object is named
`<prefix><stream>-<version>-<yyyy-MM-dd-HH-mm-ss>-<uuid><ext>` at the
arrival time of its oldest record, under `yyyy/MM/dd/HH/` by default;
whichever of SizeInMBs and IntervalInSeconds comes first delivers;
PutRecordBatch answers a RecordId per record and `Encrypted`."""
import gzip
import json
import os
import pathlib
import re
import signal
import tempfile
import threading
import urllib.request

import pytest
from botocore.exceptions import ClientError

from conftest import sluice
from test_firehose import S3, error_of, firehose


def control(endpoint, path, body):
    req = urllib.request.Request(endpoint + "/_sluice/" + path, json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(req).read())


@pytest.fixture(scope="module")
def frozen():
    """A server of its own with the virtual clock frozen: deliveries happen
    when a test moves the clock (the clock call returns once they are done)."""
    with tempfile.TemporaryDirectory() as data_dir:
        with sluice("--limits", "off", "--test-controls", data_dir=data_dir) as (_, endpoint):
            now = control(endpoint, "clock", {"freeze": True})["nowMs"]

            def advance(ms):
                return control(endpoint, "clock", {"advanceMs": ms})["nowMs"]

            yield endpoint, pathlib.Path(data_dir), advance, now


def objects(data_dir, bucket):
    """Every object of `bucket`: key -> bytes."""
    root = data_dir / "s3" / bucket
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def utc(ms):
    import datetime
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc)


UUID = "[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


def test_the_interval_delivers_one_object_named_as_aws_names_it(frozen):
    endpoint, data_dir, advance, _ = frozen
    f = firehose(endpoint)
    f.create_delivery_stream(DeliveryStreamName="by-time", S3DestinationConfiguration=dict(
        S3, BucketARN="arn:aws:s3:::interval", BufferingHints={"SizeInMBs": 1, "IntervalInSeconds": 60}))
    arrival = advance(0)
    out = f.put_record_batch(DeliveryStreamName="by-time",
                             Records=[{"Data": b"one\n"}, {"Data": b"two\n"}, {"Data": b"three\n"}])
    assert out["FailedPutCount"] == 0
    assert out["Encrypted"] is False
    ids = [r["RecordId"] for r in out["RequestResponses"]]
    assert len(set(ids)) == 3 and all(ids)
    single = f.put_record(DeliveryStreamName="by-time", Record={"Data": b"four\n"})
    assert single["RecordId"] and single["Encrypted"] is False
    advance(59_000)
    assert objects(data_dir, "interval") == {}, "59 s: the interval has not passed"
    advance(1_000)
    got = objects(data_dir, "interval")
    assert list(got.values()) == [b"one\ntwo\nthree\nfour\n"]
    [key] = got
    t = utc(arrival)
    assert re.fullmatch(t.strftime("%Y/%m/%d/%H/") + "by-time-1-" + t.strftime("%Y-%m-%d-%H-%M-%S-") + UUID, key), key
    advance(3_600_000)
    assert len(objects(data_dir, "interval")) == 1, "nothing more to deliver"
    m = metrics(endpoint, "by-time")
    assert m["sluice_firehose_incoming_records_total"] == 4
    assert m["sluice_firehose_incoming_bytes_total"] == 19
    assert m["sluice_firehose_delivered_objects_total"] == 1
    assert m["sluice_firehose_delivered_records_total"] == 4
    assert m["sluice_firehose_delivered_bytes_total"] == 19
    assert m["sluice_firehose_failed_deliveries_total"] == 0
    assert m["sluice_firehose_delivery_latency_seconds"] == 60.0
    assert m["sluice_firehose_data_freshness_seconds"] == 0
    f.put_record(DeliveryStreamName="by-time", Record={"Data": b"five\n"})
    advance(10_000)
    assert metrics(endpoint, "by-time")["sluice_firehose_data_freshness_seconds"] == 10.0
    f.delete_delivery_stream(DeliveryStreamName="by-time")
    assert "sluice_firehose_incoming_records_total" not in metrics(endpoint, "by-time")


def metrics(endpoint, delivery_stream):
    """/metrics read by Prometheus' own parser: one delivery stream's samples."""
    from prometheus_client.parser import text_string_to_metric_families
    with urllib.request.urlopen(endpoint + "/metrics") as r:
        text = r.read().decode()
    return {s.name: s.value for fam in text_string_to_metric_families(text) for s in fam.samples
            if s.labels.get("delivery_stream") == delivery_stream}


def test_the_size_delivers_first_and_objects_stay_within_it(frozen):
    endpoint, data_dir, advance, _ = frozen
    f = firehose(endpoint)
    f.create_delivery_stream(DeliveryStreamName="by-size", ExtendedS3DestinationConfiguration=dict(
        S3, BucketARN="arn:aws:s3:::size", Prefix="raw/!{timestamp:yyyy}/", ErrorOutputPrefix="err/",
        BufferingHints={"SizeInMBs": 1, "IntervalInSeconds": 900}))
    records = [bytes([65 + i]) * 400_000 for i in range(3)]
    out = f.put_record_batch(DeliveryStreamName="by-size", Records=[{"Data": r} for r in records])
    assert out["FailedPutCount"] == 0
    advance(0)
    got = objects(data_dir, "size")
    # 1.2 MB arrived: the first MiB is due at once; the object stops before
    # the record that would make it larger than 1 MiB.
    assert list(got.values()) == [records[0] + records[1]]
    [key] = got
    assert key.startswith("raw/" + utc(advance(0)).strftime("%Y") + "/by-size-1-"), key
    advance(899_000)
    assert len(objects(data_dir, "size")) == 1
    advance(1_000)
    got = objects(data_dir, "size")
    assert sorted(got.values()) == sorted([records[0] + records[1], records[2]])
    f.delete_delivery_stream(DeliveryStreamName="by-size")


def test_gzip_snappy_and_the_file_extension(frozen):
    endpoint, data_dir, advance, _ = frozen
    f = firehose(endpoint)
    f.create_delivery_stream(DeliveryStreamName="gz", ExtendedS3DestinationConfiguration=dict(
        S3, BucketARN="arn:aws:s3:::gz", CompressionFormat="GZIP",
        BufferingHints={"SizeInMBs": 1, "IntervalInSeconds": 0}))
    f.create_delivery_stream(DeliveryStreamName="ext", ExtendedS3DestinationConfiguration=dict(
        S3, BucketARN="arn:aws:s3:::gz", CompressionFormat="GZIP", FileExtension=".json.gz", Prefix="ext/",
        BufferingHints={"SizeInMBs": 1, "IntervalInSeconds": 0}))
    data = [json.dumps({"n": i}).encode() + b"\n" for i in range(100)]
    for name in ("gz", "ext"):
        f.put_record_batch(DeliveryStreamName=name, Records=[{"Data": d} for d in data])
    advance(0)
    got = objects(data_dir, "gz")
    assert len(got) == 2, got.keys()
    for key, body in got.items():
        assert gzip.decompress(body) == b"".join(data)
        if key.startswith("ext/"):
            assert key.endswith(".json.gz") and not key.endswith(".gz.json.gz")
        else:
            assert key.endswith(".gz")
    for name in ("gz", "ext"):
        f.delete_delivery_stream(DeliveryStreamName=name)
    # ZIP: one deflated entry, named with a UUID (as a peer reports AWS does).
    import io
    import zipfile
    f.create_delivery_stream(DeliveryStreamName="zipped", ExtendedS3DestinationConfiguration=dict(
        S3, BucketARN="arn:aws:s3:::zipped", CompressionFormat="ZIP",
        BufferingHints={"SizeInMBs": 1, "IntervalInSeconds": 0}))
    f.put_record_batch(DeliveryStreamName="zipped", Records=[{"Data": d} for d in data])
    advance(0)
    [(key, body)] = objects(data_dir, "zipped").items()
    assert key.endswith(".zip")
    archive = zipfile.ZipFile(io.BytesIO(body))
    [entry] = archive.infolist()
    assert re.fullmatch(UUID, entry.filename) and entry.compress_type == zipfile.ZIP_DEFLATED
    assert archive.read(entry) == b"".join(data)
    f.delete_delivery_stream(DeliveryStreamName="zipped")


def test_updates_name_the_next_objects_with_the_new_version(frozen):
    endpoint, data_dir, advance, _ = frozen
    f = firehose(endpoint)
    f.create_delivery_stream(DeliveryStreamName="upd", ExtendedS3DestinationConfiguration=dict(
        S3, BucketARN="arn:aws:s3:::upd", Prefix="v1/", BufferingHints={"SizeInMBs": 1, "IntervalInSeconds": 60}))
    f.put_record(DeliveryStreamName="upd", Record={"Data": b"a"})
    f.update_destination(DeliveryStreamName="upd", CurrentDeliveryStreamVersionId="1",
                         DestinationId="destinationId-000000000001",
                         ExtendedS3DestinationUpdate={"Prefix": "v2/"})
    advance(60_000)
    [key] = objects(data_dir, "upd")
    assert key.startswith("v2/") and "/upd-2-" in key, key
    f.delete_delivery_stream(DeliveryStreamName="upd")


NO_TABLE = {
    "SchemaConfiguration": {"DatabaseName": "analytics", "TableName": "nowhere"},
    "InputFormatConfiguration": {"Deserializer": {"HiveJsonSerDe": {}}},
    "OutputFormatConfiguration": {"Serializer": {"ParquetSerDe": {}}},
}


def test_custom_time_zone_names_objects_in_local_time_with_text_fields(frozen):
    """CustomTimeZone: the prefix's timestamp expressions and the object
    name's time are the zone's local time (with its daylight saving time);
    Java's text fields (MMM, EEE) are formatted in English."""
    import zoneinfo
    endpoint, data_dir, advance, _ = frozen
    f = firehose(endpoint)
    with pytest.raises(ClientError) as e:
        f.create_delivery_stream(DeliveryStreamName="tz", ExtendedS3DestinationConfiguration=dict(
            S3, BucketARN="arn:aws:s3:::tz", CustomTimeZone="Mars/Olympus"))
    assert error_of(e)[0] == "InvalidArgumentException" and "Mars/Olympus" in error_of(e)[1]
    f.create_delivery_stream(DeliveryStreamName="tz", ExtendedS3DestinationConfiguration=dict(
        S3, BucketARN="arn:aws:s3:::tz", CustomTimeZone="America/New_York",
        Prefix="!{timestamp:yyyy}/!{timestamp:MMM}/!{timestamp:EEE-HH}/",
        ErrorOutputPrefix="errors/", BufferingHints={"SizeInMBs": 1, "IntervalInSeconds": 60}))
    arrival = advance(0)
    f.put_record(DeliveryStreamName="tz", Record={"Data": b"local"})
    advance(60_000)
    [key] = objects(data_dir, "tz")
    t = utc(arrival).astimezone(zoneinfo.ZoneInfo("America/New_York"))
    assert key.startswith(f"{t:%Y}/{t:%b}/{t:%a}-{t:%H}/tz-1-{t:%Y-%m-%d-%H-%M-%S}-"), key
    f.delete_delivery_stream(DeliveryStreamName="tz")


def test_what_sluice_cannot_deliver_yet_is_refused_not_dropped(frozen):
    endpoint, data_dir, advance, _ = frozen
    f = firehose(endpoint)
    f.create_delivery_stream(DeliveryStreamName="lambda", ExtendedS3DestinationConfiguration=dict(
        S3, BucketARN="arn:aws:s3:::no", DataFormatConversionConfiguration=NO_TABLE))
    for call in (lambda: f.put_record(DeliveryStreamName="lambda", Record={"Data": b"x"}),
                 lambda: f.put_record_batch(DeliveryStreamName="lambda", Records=[{"Data": b"x"}])):
        with pytest.raises(ClientError) as e:
            call()
        assert error_of(e) == (
            "InvalidArgumentException",
            "Sluice does not deliver this delivery stream's records yet: the table analytics.nowhere is not in "
            "Sluice's configuration (--firehose-table analytics.nowhere=COLUMNS) (issue #16). No record was "
            "accepted by lambda.")
    f.delete_delivery_stream(DeliveryStreamName="lambda")
    with pytest.raises(ClientError) as e:
        f.put_record(DeliveryStreamName="lambda", Record={"Data": b"x"})
    assert error_of(e) == ("ResourceNotFoundException", "Firehose lambda under account 000000000000 not found.")
    # A bucket or key a directory cannot hold is refused when configured.
    with pytest.raises(ClientError) as e:
        f.create_delivery_stream(DeliveryStreamName="dots", S3DestinationConfiguration=dict(S3, Prefix="a/../b/"))
    assert error_of(e)[0] == "InvalidArgumentException"
    assert "cannot be" in error_of(e)[1]


def test_s3_backup_mode_enabled_backs_the_source_records_up(frozen):
    """Extended S3's S3BackupMode Enabled: the records as they came (before
    processing) also go to the backup bucket, under its prefix (default
    `yyyy/MM/dd/HH/`), named as any object, compressed as its configuration
    says; the destination gets them processed."""
    endpoint, data_dir, advance, _ = frozen
    f = firehose(endpoint)
    with pytest.raises(ClientError) as e:
        f.create_delivery_stream(DeliveryStreamName="backed", ExtendedS3DestinationConfiguration=dict(
            S3, BucketARN="arn:aws:s3:::backed", S3BackupMode="Enabled"))
    assert error_of(e) == ("InvalidArgumentException",
                           "S3BackupConfiguration is required when S3BackupMode is Enabled.")
    f.create_delivery_stream(DeliveryStreamName="backed", ExtendedS3DestinationConfiguration=dict(
        S3, BucketARN="arn:aws:s3:::backed", BufferingHints={"SizeInMBs": 1, "IntervalInSeconds": 60},
        ProcessingConfiguration={"Enabled": True, "Processors": [{"Type": "AppendDelimiterToRecord"}]},
        S3BackupMode="Enabled",
        S3BackupConfiguration=dict(S3, BucketARN="arn:aws:s3:::backed-raw", Prefix="raw/", CompressionFormat="GZIP")))
    arrival = advance(0)
    f.put_record_batch(DeliveryStreamName="backed", Records=[{"Data": b"one"}, {"Data": b"two"}])
    advance(60_000)
    assert list(objects(data_dir, "backed").values()) == [b"one\ntwo\n"]
    [(key, body)] = objects(data_dir, "backed-raw").items()
    t = utc(arrival)
    assert re.fullmatch(rf"raw/{t:%Y/%m/%d/%H}/backed-1-{t:%Y-%m-%d-%H-%M-%S}-{UUID}\.gz", key), key
    assert gzip.decompress(body) == b"onetwo"
    f.delete_delivery_stream(DeliveryStreamName="backed")


def test_a_batch_over_4_mib_is_refused_whole(frozen):
    endpoint, data_dir, advance, _ = frozen
    f = firehose(endpoint)
    f.create_delivery_stream(DeliveryStreamName="big", S3DestinationConfiguration=dict(
        S3, BucketARN="arn:aws:s3:::big"))
    with pytest.raises(ClientError) as e:
        f.put_record_batch(DeliveryStreamName="big", Records=[{"Data": b"x" * 1_000_000}] * 5)
    # AWS's words, as osquery's logs recorded them.
    assert error_of(e) == ("InvalidArgumentException", "Records size exceeds 4 MB limit")
    advance(3_600_000)
    assert objects(data_dir, "big") == {}
    f.delete_delivery_stream(DeliveryStreamName="big")


def test_direct_put_quotas_under_aws_limits():
    """`--limits aws`: beyond 1 MiB/s outside the three large regions, AWS
    answers ServiceUnavailableException "Slow down." per record in a batch
    (boto3#2804 shows such an answer) and for a whole PutRecord."""
    with sluice("--limits", "aws", "--test-controls") as (_, endpoint):
        control(endpoint, "clock", {"freeze": True})
        f = firehose(endpoint, region="eu-central-1")
        f.create_delivery_stream(DeliveryStreamName="q", S3DestinationConfiguration=S3)
        out = f.put_record_batch(DeliveryStreamName="q", Records=[{"Data": b"x" * 512_000}] * 3)
        assert out["FailedPutCount"] == 1
        assert out["RequestResponses"][2] == {"ErrorCode": "ServiceUnavailableException",
                                              "ErrorMessage": "Slow down."}
        with pytest.raises(ClientError) as e:
            f.put_record(DeliveryStreamName="q", Record={"Data": b"x" * 100_000})
        assert error_of(e) == ("ServiceUnavailableException", "Slow down.")
        control(endpoint, "clock", {"advanceMs": 1000})
        assert f.put_record(DeliveryStreamName="q", Record={"Data": b"x" * 100_000})["RecordId"]


def test_kill_9_loses_no_acknowledged_record():
    """Records are acknowledged once in the log; a kill -9 while puts and
    deliveries run loses none of them: after a restart every acknowledged
    record is in an object, duplicated at most within the last unconfirmed
    delivery."""
    with tempfile.TemporaryDirectory() as data_dir:
        acked = []
        with sluice("--limits", "off", "--test-controls", data_dir=data_dir) as (proc, endpoint):
            f = firehose(endpoint)
            f.create_delivery_stream(DeliveryStreamName="crash", S3DestinationConfiguration=dict(
                S3, BucketARN="arn:aws:s3:::crash", BufferingHints={"SizeInMBs": 1, "IntervalInSeconds": 0}))
            stop = threading.Event()

            def produce():
                n = 0
                while not stop.is_set():
                    batch = [f"rec-{n + i:08d}".encode().ljust(1000, b".") + b"\n" for i in range(200)]
                    try:
                        out = f.put_record_batch(DeliveryStreamName="crash", Records=[{"Data": d} for d in batch])
                    except Exception:
                        return
                    acked.extend(d[:12] for d, r in zip(batch, out["RequestResponses"]) if "RecordId" in r)
                    n += 200

            t = threading.Thread(target=produce)
            t.start()
            # Kill once deliveries are under way and records keep coming.
            root = pathlib.Path(data_dir) / "s3" / "crash"
            while len(acked) < 20_000 or not root.exists():
                assert t.is_alive()
                t.join(0.01)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            stop.set()
            t.join()
        with sluice("--limits", "off", "--test-controls", data_dir=data_dir) as (_, endpoint):
            control(endpoint, "clock", {"freeze": True})
            control(endpoint, "clock", {"advanceMs": 0})
            seen = {}
            for body in objects(pathlib.Path(data_dir), "crash").values():
                for line in body.splitlines():
                    seen[line[:12]] = seen.get(line[:12], 0) + 1
        lost = [a for a in acked if a not in seen]
        duplicated = sum(c - 1 for c in seen.values())
        print(f"acknowledged {len(acked)}, delivered {len(seen)}, duplicated {duplicated}, lost {len(lost)}")
        assert lost == []
        # Duplicates only within the last unconfirmed delivery (1 MiB).
        assert duplicated <= 1100


def test_an_update_sluice_cannot_deliver_is_refused_while_records_wait(frozen):
    endpoint, data_dir, advance, _ = frozen
    f = firehose(endpoint)
    f.create_delivery_stream(DeliveryStreamName="keep", ExtendedS3DestinationConfiguration=dict(
        S3, BucketARN="arn:aws:s3:::keep", BufferingHints={"SizeInMBs": 1, "IntervalInSeconds": 60}))
    f.put_record(DeliveryStreamName="keep", Record={"Data": b"waiting"})
    with pytest.raises(ClientError) as e:
        f.update_destination(DeliveryStreamName="keep", CurrentDeliveryStreamVersionId="1",
                             DestinationId="destinationId-000000000001",
                             ExtendedS3DestinationUpdate={"DataFormatConversionConfiguration": NO_TABLE,
                                                          "BufferingHints": {"SizeInMBs": 64}})
    assert error_of(e) == (
        "InvalidArgumentException",
        "Sluice does not deliver this configuration yet: the table analytics.nowhere is not in Sluice's "
        "configuration (--firehose-table analytics.nowhere=COLUMNS) (issue #16). keep takes records, which would not be delivered, so its destination was not changed.")
    d = f.describe_delivery_stream(DeliveryStreamName="keep")["DeliveryStreamDescription"]
    assert d["VersionId"] == "1"
    advance(60_000)
    assert list(objects(data_dir, "keep").values()) == [b"waiting"]
    f.delete_delivery_stream(DeliveryStreamName="keep")


def test_a_name_deleted_and_made_again_starts_empty(frozen):
    """On the frozen clock the old and the new delivery stream are made in
    the same millisecond: the new one delivers only its own records."""
    endpoint, data_dir, advance, _ = frozen
    f = firehose(endpoint)
    config = dict(S3, BucketARN="arn:aws:s3:::again", BufferingHints={"SizeInMBs": 1, "IntervalInSeconds": 60})
    f.create_delivery_stream(DeliveryStreamName="again", S3DestinationConfiguration=config)
    f.put_record(DeliveryStreamName="again", Record={"Data": b"old;"})
    f.delete_delivery_stream(DeliveryStreamName="again")
    f.create_delivery_stream(DeliveryStreamName="again", S3DestinationConfiguration=config)
    f.put_record(DeliveryStreamName="again", Record={"Data": b"new;"})
    advance(60_000)
    assert list(objects(data_dir, "again").values()) == [b"new;"]
    f.put_record(DeliveryStreamName="again", Record={"Data": b"newer;"})
    advance(60_000)
    assert sorted(objects(data_dir, "again").values()) == [b"new;", b"newer;"]
    f.delete_delivery_stream(DeliveryStreamName="again")


def test_records_due_when_the_clock_jumps_a_day_are_delivered_before_retention(frozen):
    endpoint, data_dir, advance, _ = frozen
    f = firehose(endpoint)
    f.create_delivery_stream(DeliveryStreamName="day", S3DestinationConfiguration=dict(
        S3, BucketARN="arn:aws:s3:::day", BufferingHints={"SizeInMBs": 1, "IntervalInSeconds": 900}))
    f.put_record(DeliveryStreamName="day", Record={"Data": b"kept"})
    advance(25 * 3_600_000)
    assert list(objects(data_dir, "day").values()) == [b"kept"]
    f.delete_delivery_stream(DeliveryStreamName="day")


def test_a_restart_goes_on_from_the_last_delivery():
    with tempfile.TemporaryDirectory() as data_dir:
        data_dir = pathlib.Path(data_dir)
        with sluice("--limits", "off", "--test-controls", data_dir=data_dir) as (_, endpoint):
            control(endpoint, "clock", {"freeze": True})
            f = firehose(endpoint)
            f.create_delivery_stream(DeliveryStreamName="r", S3DestinationConfiguration=dict(
                S3, BucketARN="arn:aws:s3:::r", BufferingHints={"SizeInMBs": 1, "IntervalInSeconds": 60}))
            f.put_record(DeliveryStreamName="r", Record={"Data": b"first;"})
            put_at = control(endpoint, "clock", {"advanceMs": 60_000})["nowMs"]
            assert list(objects(data_dir, "r").values()) == [b"first;"]
            f.put_record(DeliveryStreamName="r", Record={"Data": b"second;"})
        # A clean stop: the second record waits in the log.
        with sluice("--limits", "off", "--test-controls", data_dir=data_dir) as (_, endpoint):
            # The new clock goes on from where the first server's stood.
            control(endpoint, "clock", {"freeze": True, "nowMs": put_at})
            control(endpoint, "clock", {"advanceMs": 59_000})
            assert list(objects(data_dir, "r").values()) == [b"first;"], "the first is not delivered again"
            control(endpoint, "clock", {"advanceMs": 1_000})
            assert sorted(objects(data_dir, "r").values()) == [b"first;", b"second;"]
            f = firehose(endpoint)
            assert f.list_delivery_streams()["DeliveryStreamNames"] == ["r"]


def processors(*specs):
    return {"Enabled": True, "Processors": [
        {"Type": t, "Parameters": [{"ParameterName": k, "ParameterValue": v} for k, v in params]}
        for t, *params in specs]}


def test_processors_split_decompress_extract_and_delimit(frozen):
    """AWS's processors: RecordDeAggregation (JSON sub-records, AWS's
    examples of good and bad input), AppendDelimiterToRecord, Decompression
    and CloudWatchLogProcessing (a CloudWatch Logs subscription record).
    Records that fail go to the error output as JSON lines, as AWS writes
    them."""
    import base64
    endpoint, data_dir, advance, _ = frozen
    f = firehose(endpoint)
    hints = {"SizeInMBs": 1, "IntervalInSeconds": 60}
    f.create_delivery_stream(DeliveryStreamName="split", ExtendedS3DestinationConfiguration=dict(
        S3, BucketARN="arn:aws:s3:::split", Prefix="ok/", BufferingHints=hints,
        ErrorOutputPrefix="bad/!{firehose:error-output-type}/",
        ProcessingConfiguration=processors(("RecordDeAggregation", ("SubRecordType", "JSON")),
                                           ("AppendDelimiterToRecord",))))
    f.put_record_batch(DeliveryStreamName="split", Records=[
        {"Data": b'{"a":1}{"a":2}'}, {"Data": b'{"a":3}\n{"a":4}'}, {"Data": b'[{"a":1}, {"a":2}]'}])
    f.create_delivery_stream(DeliveryStreamName="logs", ExtendedS3DestinationConfiguration=dict(
        S3, BucketARN="arn:aws:s3:::logs", BufferingHints=hints,
        ProcessingConfiguration=processors(("Decompression", ("CompressionFormat", "GZIP")),
                                           ("CloudWatchLogProcessing", ("DataMessageExtraction", "true")),
                                           ("AppendDelimiterToRecord",))))
    envelope = {"messageType": "DATA_MESSAGE", "owner": "123456789012", "logGroup": "g", "logStream": "s",
                "subscriptionFilters": ["f"], "logEvents": [
                    {"id": "1", "timestamp": 1510109208016, "message": "log message 1"},
                    {"id": "2", "timestamp": 1510109208017, "message": "log message 2"}]}
    control_message = dict(envelope, messageType="CONTROL_MESSAGE")
    f.put_record_batch(DeliveryStreamName="logs", Records=[
        {"Data": gzip.compress(json.dumps(envelope).encode())},
        {"Data": gzip.compress(json.dumps(control_message).encode())},
        {"Data": b"not gzip"}])
    advance(60_000)
    split = objects(data_dir, "split")
    [ok] = [v for k, v in split.items() if k.startswith("ok/")]
    assert ok == b'{"a":1}\n{"a":2}\n{"a":3}\n{"a":4}\n'
    [(bad_key, bad)] = [(k, v) for k, v in split.items() if k.startswith("bad/")]
    assert bad_key.startswith("bad/processing-failed/split-1-"), bad_key
    line = json.loads(bad)
    assert base64.b64decode(line["rawData"]) == b'[{"a":1}, {"a":2}]'
    assert line["errorCode"] == "RecordDeAggregation.InvalidJson"
    assert line["attemptsMade"] == 1 and line["arrivalTimestamp"] <= line["attemptEndingTimestamp"]
    logs = objects(data_dir, "logs")
    [messages] = [v for k, v in logs.items() if not k.startswith("decompression-failed/")]
    assert messages == b"log message 1\nlog message 2\n"
    [(failed_key, failed)] = [(k, v) for k, v in logs.items() if k.startswith("decompression-failed/")]
    assert re.match(r"decompression-failed/\d{4}/\d{2}/\d{2}/\d{2}/logs-1-", failed_key), failed_key
    assert base64.b64decode(json.loads(failed)["rawData"]) == b"not gzip"
    for name in ("split", "logs"):
        f.delete_delivery_stream(DeliveryStreamName=name)


def kpl_aggregate(records):
    """A KPL aggregated record (awslabs/amazon-kinesis-producer,
    aggregation-format.md): magic, protobuf AggregatedRecord, MD5."""
    import hashlib

    def varint(n):
        out = b""
        while n >= 0x80:
            out += bytes([n & 0x7F | 0x80])
            n >>= 7
        return out + bytes([n])

    def field(number, data):
        return varint(number << 3 | 2) + varint(len(data)) + data

    message = field(1, b"pk")
    for data in records:
        message += field(3, varint(1 << 3) + varint(0) + field(3, data))
    return b"\xf3\x89\x9a\xc2" + message + hashlib.md5(message).digest()


def test_a_kinesis_source_from_latest_through_a_split_and_a_merge(frozen):
    """KinesisStreamAsSource: read from LATEST at creation, parents before
    children through a split and a merge, KPL records de-aggregated; two
    delivery streams on one source each get every record."""
    from conftest import client
    endpoint, data_dir, advance, _ = frozen
    k = client(endpoint)
    k.create_stream(StreamName="src", ShardCount=2)
    arn = k.describe_stream_summary(StreamName="src")["StreamDescriptionSummary"]["StreamARN"]
    k.put_record(StreamName="src", PartitionKey="a", Data=b"before;")
    f = firehose(endpoint)
    for name in ("from-src", "also-src"):
        f.create_delivery_stream(
            DeliveryStreamName=name, DeliveryStreamType="KinesisStreamAsSource",
            KinesisStreamSourceConfiguration={"KinesisStreamARN": arn, "RoleARN": S3["RoleARN"]},
            S3DestinationConfiguration=dict(S3, BucketARN=f"arn:aws:s3:::{name}",
                                            BufferingHints={"SizeInMBs": 1, "IntervalInSeconds": 60}))
    with pytest.raises(ClientError) as e:
        f.put_record(DeliveryStreamName="from-src", Record={"Data": b"x"})
    assert error_of(e) == ("InvalidArgumentException",
                           "This operation is not permitted on KinesisStreamAsSource delivery stream type.")
    # One key, so every record goes to the same shard and its children.
    k.put_record(StreamName="src", PartitionKey="a", Data=b"1;")
    k.put_record(StreamName="src", PartitionKey="a", Data=kpl_aggregate([b"2;", b"3;"]))
    shard = k.put_record(StreamName="src", PartitionKey="a", Data=b"4;")["ShardId"]
    shards = k.list_shards(StreamName="src")["Shards"]
    parent = next(s for s in shards if s["ShardId"] == shard)
    low, high = int(parent["HashKeyRange"]["StartingHashKey"]), int(parent["HashKeyRange"]["EndingHashKey"])
    k.split_shard(StreamName="src", ShardToSplit=shard, NewStartingHashKey=str((low + high) // 2 + 1))
    k.put_record(StreamName="src", PartitionKey="a", Data=b"5;")
    children = [s["ShardId"] for s in k.list_shards(StreamName="src")["Shards"]
                if s.get("ParentShardId") == shard]
    k.merge_shards(StreamName="src", ShardToMerge=children[0], AdjacentShardToMerge=children[1])
    k.put_record(StreamName="src", PartitionKey="a", Data=b"6;")
    advance(60_000)
    for name in ("from-src", "also-src"):
        # "before;" was put before the delivery stream existed. Parents
        # before children: the parent's records, then the split's child's,
        # then the merged shard's, each read once its parents are done.
        got = sorted(objects(data_dir, name).values())
        assert got == [b"1;2;3;4;", b"5;", b"6;"], (name, got)
    k.put_record(StreamName="src", PartitionKey="b", Data=b"7;")
    advance(60_000)
    got = sorted(objects(data_dir, "from-src").values())
    assert b"7;" in got
    for name in ("from-src", "also-src"):
        f.delete_delivery_stream(DeliveryStreamName=name)
    k.delete_stream(StreamName="src")
    with pytest.raises(ClientError) as e:
        f.create_delivery_stream(
            DeliveryStreamName="nosrc", DeliveryStreamType="KinesisStreamAsSource",
            KinesisStreamSourceConfiguration={"KinesisStreamARN": arn, "RoleARN": S3["RoleARN"]},
            S3DestinationConfiguration=S3)
    assert error_of(e)[0] == "InvalidArgumentException"


class Receiver:
    """A real HTTP endpoint for Firehose to deliver to: it records every
    request and answers as told (one planned answer per request, then the
    default): "ok" (200, the requestId echoed), "500", "413", "wrong-id"
    (200 naming another requestId) or "stall" (no answer until the test
    ends)."""

    def __init__(self, default="ok"):
        import http.server
        self.requests, self.plan, self.default = [], [], default
        self.released = threading.Event()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                receiver.requests.append((self.path, dict(self.headers), json.loads(body)))
                answer = receiver.plan.pop(0) if receiver.plan else receiver.default
                if answer == "stall":
                    receiver.released.wait(60)
                    return
                request_id = json.loads(body)["requestId"]
                status = {"500": 500, "413": 413}.get(answer, 200)
                out = json.dumps({"requestId": "someone-else" if answer == "wrong-id" else request_id,
                                  "timestamp": 1}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/ingest"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.released.set()
        self.server.shutdown()


@pytest.fixture(scope="module")
def http_frozen():
    """A server whose HTTP endpoint requests time out after 300 ms, on the
    frozen clock."""
    with tempfile.TemporaryDirectory() as data_dir:
        with sluice("--limits", "off", "--test-controls", "--firehose-http-timeout-ms", "300",
                    data_dir=data_dir) as (_, endpoint):
            control(endpoint, "clock", {"freeze": True})

            def advance(ms):
                return control(endpoint, "clock", {"advanceMs": ms})["nowMs"]

            yield endpoint, pathlib.Path(data_dir), advance


def http_stream(f, name, receiver, retry_s, backup="FailedDataOnly", **request):
    f.create_delivery_stream(DeliveryStreamName=name, HttpEndpointDestinationConfiguration={
        "EndpointConfiguration": {"Url": receiver.url, "Name": "receiver", "AccessKey": "secret-key"},
        "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 60},
        "RequestConfiguration": dict({"CommonAttributes": [{"AttributeName": "env", "AttributeValue": "test"}]},
                                     **request),
        "RetryOptions": {"DurationInSeconds": retry_s},
        "S3BackupMode": backup,
        "S3Configuration": dict(S3, BucketARN=f"arn:aws:s3:::{name}-backup"),
    })


def test_http_endpoint_requests_as_aws_sends_them_and_retries_with_one_request_id(http_frozen):
    import base64
    endpoint, data_dir, advance = http_frozen
    receiver = Receiver()
    receiver.plan = ["500", "wrong-id", "ok"]
    f = firehose(endpoint)
    http_stream(f, "hook", receiver, 60, ContentEncoding="GZIP")
    arn = f.describe_delivery_stream(DeliveryStreamName="hook")["DeliveryStreamDescription"]["DeliveryStreamARN"]
    f.put_record_batch(DeliveryStreamName="hook", Records=[{"Data": b"one"}, {"Data": b"two"}, {"Data": b"\xff"}])
    advance(59_000)
    assert receiver.requests == []
    sent_at = advance(1_000)
    [(path, headers, body)] = receiver.requests
    assert path == "/ingest"
    request_id = headers["X-Amz-Firehose-Request-Id"]
    assert re.fullmatch(UUID, request_id)
    assert headers["X-Amz-Firehose-Protocol-Version"] == "1.0"
    assert headers["X-Amz-Firehose-Source-Arn"] == arn
    assert headers["X-Amz-Firehose-Access-Key"] == "secret-key"
    assert json.loads(headers["X-Amz-Firehose-Common-Attributes"]) == {"commonAttributes": {"env": "test"}}
    assert headers["Content-Type"] == "application/json" and headers["Content-Encoding"] == "gzip"
    # The timestamp in milliseconds (a LocalStack deviation sends seconds).
    assert body == {"requestId": request_id, "timestamp": sent_at,
                    "records": [{"data": base64.b64encode(d).decode()} for d in (b"one", b"two", b"\xff")]}
    # Retried from 1 s after the failure (give or take 15%), then 2 s.
    advance(800)
    assert len(receiver.requests) == 1
    advance(400)
    assert len(receiver.requests) == 2
    advance(2_400)
    assert len(receiver.requests) == 3
    assert {r[1]["X-Amz-Firehose-Request-Id"] for r in receiver.requests} == {request_id}
    advance(600_000)
    assert len(receiver.requests) == 3, "accepted: not sent again"
    assert objects(data_dir, "hook-backup") == {}, "FailedDataOnly: nothing failed"
    f.delete_delivery_stream(DeliveryStreamName="hook")
    receiver.close()


def test_http_endpoint_failures_go_to_the_s3_backup(http_frozen):
    import base64
    endpoint, data_dir, advance = http_frozen
    f = firehose(endpoint)
    cases = [("gone", "500", 2, "HttpEndpoint.DestinationException", 2),
             ("big", "413", 600, "HttpEndpoint.RequestEntityTooLarge", 1),
             ("slow", "stall", 0, "HttpEndpoint.ResponseTimeout", 1)]
    receivers = []
    for name, answer, retry_s, _, _ in cases:
        receivers.append(Receiver(default=answer))
        http_stream(f, name, receivers[-1], retry_s)
        f.put_record_batch(DeliveryStreamName=name, Records=[{"Data": b"lost?"}, {"Data": b"no"}])
    advance(60_000)
    advance(1_200)
    advance(2_400)
    for (name, _, _, code, attempts), receiver in zip(cases, receivers):
        assert len(receiver.requests) == attempts, name
        [(key, backup)] = objects(data_dir, f"{name}-backup").items()
        assert key.startswith("http-endpoint-failed/"), key
        lines = [json.loads(line) for line in backup.splitlines()]
        assert [base64.b64decode(line["rawData"]) for line in lines] == [b"lost?", b"no"]
        assert {(line["errorCode"], line["attemptsMade"]) for line in lines} == {(code, attempts)}, name
        f.delete_delivery_stream(DeliveryStreamName=name)
        receiver.close()


def test_http_endpoint_all_data_is_backed_up_too(http_frozen):
    endpoint, data_dir, advance = http_frozen
    receiver = Receiver()
    f = firehose(endpoint)
    http_stream(f, "both", receiver, 60, backup="AllData")
    f.put_record(DeliveryStreamName="both", Record={"Data": b"kept twice"})
    advance(60_000)
    assert len(receiver.requests) == 1
    assert list(objects(data_dir, "both-backup").values()) == [b"kept twice"]
    f.delete_delivery_stream(DeliveryStreamName="both")
    receiver.close()


def test_dynamic_partitioning_with_jq_keys_and_gzip(frozen):
    """MetadataExtraction's jq query gives each record its partition keys;
    each partition is its own object under the prefix with the keys in,
    GZIP-compressed; records without a key go to partitioning-failed (the
    error output type AWS's CDK integration test lists)."""
    import base64
    endpoint, data_dir, advance, _ = frozen
    f = firehose(endpoint)
    f.create_delivery_stream(DeliveryStreamName="parts", ExtendedS3DestinationConfiguration=dict(
        S3, BucketARN="arn:aws:s3:::parts", CompressionFormat="GZIP",
        Prefix="customer=!{partitionKeyFromQuery:customer}/!{timestamp:yyyy}/",
        ErrorOutputPrefix="errors/!{firehose:error-output-type}/",
        BufferingHints={"SizeInMBs": 64, "IntervalInSeconds": 60},
        DynamicPartitioningConfiguration={"Enabled": True},
        ProcessingConfiguration=processors(
            ("RecordDeAggregation", ("SubRecordType", "JSON")),
            ("MetadataExtraction", ("MetadataExtractionQuery", "{customer: .customer}"),
             ("JsonParsingEngine", "JQ-1.6")),
            ("AppendDelimiterToRecord",))))
    f.put_record_batch(DeliveryStreamName="parts", Records=[
        {"Data": b'{"customer":"a","n":1}{"customer":"b","n":2}'},
        {"Data": b'{"customer":"a","n":3}'},
        {"Data": b'{"n":5}'},
        {"Data": b"oops"}])
    year = utc(advance(60_000)).strftime("%Y")
    got = objects(data_dir, "parts")
    by_prefix = {k.rsplit("/", 1)[0]: v for k, v in got.items()}
    assert set(by_prefix) == {f"customer=a/{year}", f"customer=b/{year}", "errors/partitioning-failed",
                              "errors/processing-failed"}, got.keys()
    assert all(k.endswith(".gz") for k in got if k.startswith("customer="))
    assert gzip.decompress(by_prefix[f"customer=a/{year}"]) == b'{"customer":"a","n":1}\n{"customer":"a","n":3}\n'
    assert gzip.decompress(by_prefix[f"customer=b/{year}"]) == b'{"customer":"b","n":2}\n'
    [no_key] = [json.loads(line) for line in by_prefix["errors/partitioning-failed"].splitlines()]
    assert base64.b64decode(no_key["rawData"]) == b'{"n":5}'
    assert no_key["errorCode"] == "DynamicPartitioning.MetadataExtractionFailed"
    # Not JSON fails de-aggregation first, which comes before the query.
    [not_json] = [json.loads(line) for line in by_prefix["errors/processing-failed"].splitlines()]
    assert base64.b64decode(not_json["rawData"]) == b"oops"
    assert not_json["errorCode"] == "RecordDeAggregation.InvalidJson"
    f.delete_delivery_stream(DeliveryStreamName="parts")
    # A query that does not compile is refused at put time, never dropped.
    f.create_delivery_stream(DeliveryStreamName="badq", ExtendedS3DestinationConfiguration=dict(
        S3, BucketARN="arn:aws:s3:::badq", Prefix="c=!{partitionKeyFromQuery:c}/",
        ErrorOutputPrefix="errors/", DynamicPartitioningConfiguration={"Enabled": True},
        ProcessingConfiguration=processors(("MetadataExtraction", ("MetadataExtractionQuery", "{c: .c")))))
    with pytest.raises(ClientError) as e:
        f.put_record(DeliveryStreamName="badq", Record={"Data": b"{}"})
    assert "MetadataExtractionQuery" in error_of(e)[1]
    f.delete_delivery_stream(DeliveryStreamName="badq")


class FakeLambdaUrl:
    """The HTTP URL that stands for a Lambda function (`--firehose-lambda
    ARN=URL`): it gets Firehose's invocation event and answers as a
    transformation function would (AWS's data transformation contract):
    records upper-cased with a partition key, "drop" Dropped, "fail"
    ProcessingFailed. Told to, it fails whole invocations (500)."""

    def __init__(self):
        import base64
        import http.server
        self.events, self.failures = [], 0
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                event = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.events.append(event)
                if owner.failures > 0:
                    owner.failures -= 1
                    self.send_response(500)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                out = []
                for r in event["records"]:
                    data = base64.b64decode(r["data"])
                    if data == b"drop":
                        out.append({"recordId": r["recordId"], "result": "Dropped"})
                    elif data == b"fail":
                        out.append({"recordId": r["recordId"], "result": "ProcessingFailed", "data": r["data"]})
                    else:
                        out.append({"recordId": r["recordId"], "result": "Ok",
                                    "data": base64.b64encode(data.upper()).decode(),
                                    "metadata": {"partitionKeys": {"first": data[:1].decode()}}})
                body = json.dumps({"records": out}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/invoke"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_the_lambda_processor_through_a_url_with_partition_keys_from_it():
    import base64
    fn = FakeLambdaUrl()
    arn = "arn:aws:lambda:us-east-1:000000000000:function:upper"
    with tempfile.TemporaryDirectory() as data_dir:
        with sluice("--limits", "off", "--test-controls", "--firehose-lambda", f"{arn}={fn.url}",
                    data_dir=data_dir) as (_, endpoint):
            control(endpoint, "clock", {"freeze": True})
            f = firehose(endpoint)
            f.create_delivery_stream(DeliveryStreamName="lam", ExtendedS3DestinationConfiguration=dict(
                S3, BucketARN="arn:aws:s3:::lam", Prefix="first=!{partitionKeyFromLambda:first}/",
                ErrorOutputPrefix="errors/!{firehose:error-output-type}/",
                BufferingHints={"SizeInMBs": 64, "IntervalInSeconds": 60},
                DynamicPartitioningConfiguration={"Enabled": True},
                ProcessingConfiguration=processors(
                    ("Lambda", ("LambdaArn", arn), ("NumberOfRetries", "1")),
                    ("AppendDelimiterToRecord",))))
            f.put_record_batch(DeliveryStreamName="lam", Records=[
                {"Data": b"apple"}, {"Data": b"avocado"}, {"Data": b"banana"}, {"Data": b"drop"},
                {"Data": b"fail"}])
            fn.failures = 1
            control(endpoint, "clock", {"advanceMs": 60_000})
            # One invocation failed (500) and was tried again (NumberOfRetries 1).
            assert len(fn.events) == 2
            event = fn.events[-1]
            assert event["deliveryStreamArn"].endswith(":deliverystream/lam") and event["region"] == "us-east-1"
            assert [base64.b64decode(r["data"]) for r in event["records"]] == [
                b"apple", b"avocado", b"banana", b"drop", b"fail"]
            assert all("approximateArrivalTimestamp" in r and r["recordId"] for r in event["records"])
            got = objects(pathlib.Path(data_dir), "lam")
            by_prefix = {k.rsplit("/", 1)[0]: v for k, v in got.items()}
            assert by_prefix["first=a"] == b"APPLE\nAVOCADO\n"
            assert by_prefix["first=b"] == b"BANANA\n"
            [failed] = [json.loads(x) for x in by_prefix["errors/processing-failed"].splitlines()]
            assert base64.b64decode(failed["rawData"]) == b"fail"
            assert failed["errorCode"] == "Lambda.ProcessingFailedStatus" and failed["lambdaArn"] == arn
            # A function that keeps failing: every record goes to the error output.
            fn.failures = 10
            f.put_record(DeliveryStreamName="lam", Record={"Data": b"cherry"})
            control(endpoint, "clock", {"advanceMs": 60_000})
            errors = [v for k, v in objects(pathlib.Path(data_dir), "lam").items()
                      if k.startswith("errors/processing-failed/")]
            lines = [json.loads(x) for v in errors for x in v.splitlines()]
            assert {(base64.b64decode(x["rawData"]), x["errorCode"], x["attemptsMade"]) for x in lines} >= {
                (b"cherry", "Lambda.FunctionError", 2)}
            # An unmapped function: puts are refused, never accepted and dropped.
            f.create_delivery_stream(DeliveryStreamName="nomap", ExtendedS3DestinationConfiguration=dict(
                S3, BucketARN="arn:aws:s3:::nomap", ProcessingConfiguration=processors(
                    ("Lambda", ("LambdaArn", "arn:aws:lambda:us-east-1:000000000000:function:other")))))
            with pytest.raises(ClientError) as e:
                f.put_record(DeliveryStreamName="nomap", Record={"Data": b"x"})
            assert "--firehose-lambda" in error_of(e)[1]
    fn.server.shutdown()


def test_an_http_endpoint_gets_what_the_lambda_processor_returns():
    """Lambda processing before an HTTP endpoint: the request carries the
    records the function returned Ok, dropped ones are gone, failed ones go
    to the S3 backup's `processing-failed`; a delivery the function dropped
    whole sends no request and moves on."""
    import base64
    fn = FakeLambdaUrl()
    receiver = Receiver()
    arn = "arn:aws:lambda:us-east-1:000000000000:function:upper"
    with tempfile.TemporaryDirectory() as data_dir:
        with sluice("--limits", "off", "--test-controls", "--firehose-lambda", f"{arn}={fn.url}",
                    data_dir=data_dir) as (_, endpoint):
            control(endpoint, "clock", {"freeze": True})
            f = firehose(endpoint)
            http_stream(f, "hooked", receiver, 60)
            f.update_destination(
                DeliveryStreamName="hooked", CurrentDeliveryStreamVersionId="1",
                DestinationId="destinationId-000000000001",
                HttpEndpointDestinationUpdate={"ProcessingConfiguration": processors(("Lambda", ("LambdaArn", arn)))})
            f.put_record_batch(DeliveryStreamName="hooked", Records=[
                {"Data": b"apple"}, {"Data": b"drop"}, {"Data": b"fail"}, {"Data": b"banana"}])
            control(endpoint, "clock", {"advanceMs": 60_000})
            [(_, _, body)] = receiver.requests
            assert [base64.b64decode(r["data"]) for r in body["records"]] == [b"APPLE", b"BANANA"]
            [failed] = [json.loads(x) for k, v in objects(pathlib.Path(data_dir), "hooked-backup").items()
                        for x in v.splitlines()]
            assert base64.b64decode(failed["rawData"]) == b"fail"
            assert failed["errorCode"] == "Lambda.ProcessingFailedStatus"
            f.put_record(DeliveryStreamName="hooked", Record={"Data": b"drop"})
            control(endpoint, "clock", {"advanceMs": 60_000})
            assert len(receiver.requests) == 1, "nothing left to send"
            f.put_record(DeliveryStreamName="hooked", Record={"Data": b"kiwi"})
            control(endpoint, "clock", {"advanceMs": 60_000})
            assert [base64.b64decode(r["data"]) for r in receiver.requests[-1][2]["records"]] == [b"KIWI"]
    fn.server.shutdown()
    receiver.close()


def test_a_kinesis_source_into_an_http_endpoint(http_frozen):
    """KinesisStreamAsSource with an HTTP endpoint destination: the stream's
    records (KPL ones de-aggregated) from LATEST at creation, through a
    split, in requests retried with one requestId; the position moves on
    only once a request is accepted."""
    import base64
    from conftest import client
    endpoint, data_dir, advance = http_frozen
    receiver = Receiver()
    receiver.plan = ["500", "ok"]
    k = client(endpoint)
    k.create_stream(StreamName="hsrc", ShardCount=1)
    arn = k.describe_stream_summary(StreamName="hsrc")["StreamDescriptionSummary"]["StreamARN"]
    k.put_record(StreamName="hsrc", PartitionKey="a", Data=b"before")
    f = firehose(endpoint)
    f.create_delivery_stream(
        DeliveryStreamName="k-hook", DeliveryStreamType="KinesisStreamAsSource",
        KinesisStreamSourceConfiguration={"KinesisStreamARN": arn, "RoleARN": S3["RoleARN"]},
        HttpEndpointDestinationConfiguration={
            "EndpointConfiguration": {"Url": receiver.url, "Name": "receiver"},
            "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 60},
            "RetryOptions": {"DurationInSeconds": 60},
            "S3Configuration": dict(S3, BucketARN="arn:aws:s3:::k-hook-backup"),
        })
    k.put_record(StreamName="hsrc", PartitionKey="a", Data=b"one")
    k.put_record(StreamName="hsrc", PartitionKey="a", Data=kpl_aggregate([b"two", b"three"]))
    shard = k.list_shards(StreamName="hsrc")["Shards"][0]
    k.split_shard(StreamName="hsrc", ShardToSplit=shard["ShardId"],
                  NewStartingHashKey=str(int(shard["HashKeyRange"]["EndingHashKey"]) // 2))
    k.put_record(StreamName="hsrc", PartitionKey="a", Data=b"four")
    advance(60_000)
    assert len(receiver.requests) == 1, "the first request failed (500)"
    advance(1_200)
    assert receiver.requests[0][1]["X-Amz-Firehose-Request-Id"] == receiver.requests[1][1]["X-Amz-Firehose-Request-Id"]
    # Then the child's record (due too), once its parent was read to its end.
    [(_, _, retried), (_, _, child)] = receiver.requests[1:]
    assert [base64.b64decode(r["data"]) for r in retried["records"]] == [b"one", b"two", b"three"]
    assert [base64.b64decode(r["data"]) for r in child["records"]] == [b"four"]
    advance(60_000)
    assert len(receiver.requests) == 3
    assert objects(data_dir, "k-hook-backup") == {}
    f.delete_delivery_stream(DeliveryStreamName="k-hook")
    k.delete_stream(StreamName="hsrc")
    receiver.close()


def test_a_lambda_on_a_kinesis_source_gets_the_record_metadata():
    """Read from a Kinesis stream, the Lambda's event names the stream
    (`sourceKinesisStreamArn`) and each record's `kinesisRecordMetadata`:
    shard, partition key, arrival, sequence number (as GetRecords shows
    it) and subsequence number (a KPL user record's place)."""
    import base64
    from conftest import client
    fn = FakeLambdaUrl()
    arn = "arn:aws:lambda:us-east-1:000000000000:function:upper"
    with tempfile.TemporaryDirectory() as data_dir:
        with sluice("--limits", "off", "--test-controls", "--firehose-lambda", f"{arn}={fn.url}",
                    data_dir=data_dir) as (_, endpoint):
            control(endpoint, "clock", {"freeze": True})
            k = client(endpoint)
            k.create_stream(StreamName="meta-src", ShardCount=1)
            stream_arn = k.describe_stream_summary(StreamName="meta-src")["StreamDescriptionSummary"]["StreamARN"]
            f = firehose(endpoint)
            f.create_delivery_stream(
                DeliveryStreamName="meta", DeliveryStreamType="KinesisStreamAsSource",
                KinesisStreamSourceConfiguration={"KinesisStreamARN": stream_arn, "RoleARN": S3["RoleARN"]},
                ExtendedS3DestinationConfiguration=dict(
                    S3, BucketARN="arn:aws:s3:::meta", BufferingHints={"SizeInMBs": 1, "IntervalInSeconds": 60},
                    ProcessingConfiguration=processors(("Lambda", ("LambdaArn", arn)))))
            plain = k.put_record(StreamName="meta-src", PartitionKey="pk-1", Data=b"apple")
            k.put_record(StreamName="meta-src", PartitionKey="pk-2", Data=kpl_aggregate([b"kiwi", b"lime"]))
            control(endpoint, "clock", {"advanceMs": 60_000})
            [event] = fn.events
            assert event["sourceKinesisStreamArn"] == stream_arn
            got = k.get_records(ShardIterator=k.get_shard_iterator(
                StreamName="meta-src", ShardId=plain["ShardId"], ShardIteratorType="TRIM_HORIZON")["ShardIterator"])
            records = got["Records"]
            metas = [r["kinesisRecordMetadata"] for r in event["records"]]
            assert [base64.b64decode(r["data"]) for r in event["records"]] == [b"apple", b"kiwi", b"lime"]
            assert [(m["shardId"], m["partitionKey"], m["sequenceNumber"], m["subsequenceNumber"]) for m in metas] == [
                (plain["ShardId"], "pk-1", records[0]["SequenceNumber"], 0),
                (plain["ShardId"], "pk-2", records[1]["SequenceNumber"], 0),
                (plain["ShardId"], "pk-2", records[1]["SequenceNumber"], 1)]
            assert metas[0]["approximateArrivalTimestamp"] == int(
                records[0]["ApproximateArrivalTimestamp"].timestamp() * 1000)
            assert list(objects(pathlib.Path(data_dir), "meta").values()) == [b"APPLEKIWILIME"]
    fn.server.shutdown()


def test_an_http_endpoint_access_key_from_a_secret_file():
    """SecretsManagerConfiguration: Sluice has no Secrets Manager, so
    `--firehose-secret ARN=FILE` stands for the secret: the access key is
    the `api_key` of the JSON in the file (AWS's form for HTTP endpoint
    secrets), read for each request, so a rotated secret is used next; a
    secret that is not that JSON fails the request (retried); an unmapped
    secret's records are refused."""
    secret_arn = "arn:aws:secretsmanager:us-east-1:000000000000:secret:hook-key"
    receiver = Receiver()
    with tempfile.TemporaryDirectory() as data_dir:
        secret = pathlib.Path(data_dir) / "secret.json"
        secret.write_text(json.dumps({"api_key": "first-key"}))
        with sluice("--limits", "off", "--test-controls", "--firehose-secret", f"{secret_arn}={secret}",
                    data_dir=data_dir) as (_, endpoint):
            control(endpoint, "clock", {"freeze": True})
            f = firehose(endpoint)

            def create(name, arn):
                f.create_delivery_stream(DeliveryStreamName=name, HttpEndpointDestinationConfiguration={
                    "EndpointConfiguration": {"Url": receiver.url, "Name": "receiver"},
                    "SecretsManagerConfiguration": {"SecretARN": arn, "Enabled": True,
                                                    "RoleARN": S3["RoleARN"]},
                    "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 60},
                    "S3Configuration": dict(S3, BucketARN=f"arn:aws:s3:::{name}-backup"),
                })

            create("secret-hook", secret_arn)
            f.put_record(DeliveryStreamName="secret-hook", Record={"Data": b"one"})
            control(endpoint, "clock", {"advanceMs": 60_000})
            assert receiver.requests[-1][1]["X-Amz-Firehose-Access-Key"] == "first-key"
            secret.write_text(json.dumps({"api_key": "rotated-key"}))
            f.put_record(DeliveryStreamName="secret-hook", Record={"Data": b"two"})
            control(endpoint, "clock", {"advanceMs": 60_000})
            assert receiver.requests[-1][1]["X-Amz-Firehose-Access-Key"] == "rotated-key"
            secret.write_text("not json")
            f.put_record(DeliveryStreamName="secret-hook", Record={"Data": b"three"})
            control(endpoint, "clock", {"advanceMs": 60_000})
            assert len(receiver.requests) == 2, "no request without a key"
            secret.write_text(json.dumps({"api_key": "fixed-key"}))
            control(endpoint, "clock", {"advanceMs": 2_000})
            assert receiver.requests[-1][1]["X-Amz-Firehose-Access-Key"] == "fixed-key"
            create("unmapped-hook", secret_arn + "-other")
            with pytest.raises(ClientError) as e:
                f.put_record(DeliveryStreamName="unmapped-hook", Record={"Data": b"x"})
            assert error_of(e)[0] == "InvalidArgumentException" and "--firehose-secret" in error_of(e)[1]
    receiver.close()
