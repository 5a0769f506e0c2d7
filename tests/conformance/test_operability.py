"""What an operator sees of the real binary: the log on standard error
(recovery at start, a line per request at debug, unknown targets named, the
level chosen by --log-level or RUST_LOG) and /metrics, read by Prometheus'
own parser."""
import os
import subprocess
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import client, sluice


def scrape(endpoint):
    with urllib.request.urlopen(endpoint + "/metrics") as r:
        assert r.status == 200
        assert r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        return {f.name: f for f in text_string_to_metric_families(r.read().decode())}


def value(families, family, name, **labels):
    for s in families[family].samples:
        if s.name == name and s.labels == labels:
            return s.value
    raise AssertionError(f"no {name} {labels} in {families[family].samples}")


def line_with(log, needle):
    lines = [l for l in log.splitlines() if needle in l]
    assert lines, f"no {needle!r} in {log}"
    return lines[0]


def test_the_log_reports_recovery_requests_and_unknown_targets(tmp_path):
    with sluice("--limits", "off", "--log-level", "debug", data_dir=tmp_path,
                stderr=subprocess.PIPE) as (proc, endpoint):
        kinesis = client(endpoint)
        kinesis.create_stream(StreamName="logged", ShardCount=1)
        kinesis.put_record(StreamName="logged", Data=b"x", PartitionKey="k")
        # A target the server does not know is named in the log (AWS's
        # UnknownOperationException carries no message).
        request = urllib.request.Request(
            endpoint + "/", data=b"{}", method="POST",
            headers={"X-Amz-Target": "Kinesis_20131202.MakeCoffee",
                     "Content-Type": "application/x-amz-json-1.1"})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(request)
        assert e.value.code == 400
    # The server has stopped: its whole log.
    log = proc.stderr.read()
    opened = line_with(log, "opened ")
    assert "INFO" in opened and "0 streams; 0 shard logs" in opened, opened
    line = line_with(log, 'operation="PutRecord"')
    assert "DEBUG" in line and 'stream="logged"' in line and "status=200" in line, line
    assert "latency_us=" in line, line
    line = line_with(log, "MakeCoffee")
    assert "WARN" in line and "UnknownOperationException" in line, line
    line = line_with(log, 'operation="unknown"')
    assert "status=400" in line and 'error="UnknownOperationException"' in line, line
    # Restarted on the same directory: recovery says what it found.
    with sluice("--limits", "off", data_dir=tmp_path, stderr=subprocess.PIPE) as (proc, _):
        pass
    opened = line_with(proc.stderr.read(), "opened ")
    assert "1 streams; 1 shard logs" in opened, opened


@pytest.mark.parametrize("args, env, logged", [
    ([], {"RUST_LOG": "off"}, False),
    (["--log-level", "info"], {"RUST_LOG": "off"}, True),
    (["--log-level", "warn"], {}, False),
    ([], {"SLUICE_LOG_LEVEL": "info", "RUST_LOG": "off"}, True),
])
def test_the_log_level_comes_from_the_flag_then_rust_log(tmp_path, args, env, logged):
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        with sluice("--limits", "off", *args, data_dir=tmp_path,
                    stderr=subprocess.PIPE) as (proc, _):
            pass
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    assert ("opened " in proc.stderr.read()) == logged


def test_metrics_parse_with_prometheus_and_follow_the_traffic(tmp_path):
    with sluice("--limits", "off", data_dir=tmp_path) as (_, endpoint):
        kinesis = client(endpoint)
        kinesis.create_stream(StreamName="scraped", ShardCount=2)
        r = kinesis.put_records(StreamName="scraped", Records=[
            {"Data": b"0123456789", "PartitionKey": f"key{i}"} for i in range(10)])
        assert r["FailedRecordCount"] == 0
        shard = kinesis.list_shards(StreamName="scraped")["Shards"][0]["ShardId"]
        it = kinesis.get_shard_iterator(StreamName="scraped", ShardId=shard,
                                        ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        kinesis.get_records(ShardIterator=it)
        families = scrape(endpoint)
        stream = {"account": "000000000000", "region": "us-east-1", "stream": "scraped"}
        assert value(families, "sluice_stream_incoming_records", "sluice_stream_incoming_records_total", **stream) == 10
        # 10 bytes of data and a 4-byte key each.
        assert value(families, "sluice_stream_incoming_bytes", "sluice_stream_incoming_bytes_total", **stream) == 140
        assert value(families, "sluice_stream_open_shards", "sluice_stream_open_shards", status="ACTIVE", **stream) == 2
        assert value(families, "sluice_requests", "sluice_requests_total", operation="GetRecords", status="200") == 1
        assert value(families, "sluice_request_duration_seconds", "sluice_request_duration_seconds_count", operation="PutRecords") == 1
        assert value(families, "sluice_fsync_round_seconds", "sluice_fsync_round_seconds_count") >= 1
        assert families["sluice_request_duration_seconds"].type == "histogram"
        assert families["sluice_open_connections"].type == "gauge"
        kinesis.delete_stream(StreamName="scraped")
        families = scrape(endpoint)
        assert not [s for s in families["sluice_stream_incoming_records"].samples
                    if s.labels.get("stream") == "scraped"]
