"""`sluice put` and `sluice tail` (the client crate) against `sluice serve`,
and KPL aggregation interop with the Python `aws-kinesis-agg` package (the
aggregation library AWS publishes for Python)."""
import json
import os
import signal
import socket
import subprocess
import tempfile
import threading

import pytest
from aws_kinesis_agg.aggregator import RecordAggregator
from aws_kinesis_agg.deaggregator import iter_deaggregate_records

from conftest import BINARY, client, sluice


def env(endpoint):
    e = dict(os.environ)
    e.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="AKIDEXAMPLE",
        AWS_SECRET_ACCESS_KEY="secret",
        AWS_REGION="us-east-1",
        # tail's default claim-check directory, away from the real home.
        XDG_DATA_HOME=os.path.join(tempfile.gettempdir(), "sluice-tests-xdg"),
    )
    e.pop("AWS_PROFILE", None)
    return e


def put(endpoint, *args, input=None):
    return subprocess.run(
        [BINARY, "put", *args], input=input, capture_output=True, env=env(endpoint), timeout=300
    )


def tail(endpoint, *args):
    out = subprocess.run(
        [BINARY, "tail", *args], capture_output=True, env=env(endpoint), timeout=300
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def tail_json(endpoint, stream, *args):
    lines = tail(endpoint, "--stream", stream, "--format", "json", *args).decode().splitlines()
    return [json.loads(line) for line in lines]


def all_records(kinesis, stream):
    """Every record as stored, by shard, with boto3."""
    out = []
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        it = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while it:
            page = kinesis.get_records(ShardIterator=it)
            out.extend(page["Records"])
            if not page["Records"] and page["MillisBehindLatest"] == 0:
                break
            it = page.get("NextShardIterator")
    return out


def test_put_lines_then_tail_them_in_order(endpoint, kinesis, stream, tmp_path):
    path = tmp_path / "lines.txt"
    path.write_bytes(b"".join(b"line %d\n" % i for i in range(5000)) + b"last, no newline")
    done = put(endpoint, "--stream", stream, "--file", str(path), "--lines", "--partition-key", "one")
    assert done.returncode == 0, done.stderr
    assert b"put 5001 records" in done.stderr
    records = tail_json(endpoint, stream)
    assert [r["data"] for r in records] == [f"line {i}" for i in range(5000)] + ["last, no newline"]
    assert {r["partitionKey"] for r in records} == {"one"}
    # As stored: one Kinesis record per line, no aggregation.
    assert len(all_records(kinesis, stream)) == 5001


def test_put_stdin_as_one_record_and_binary_data(endpoint, stream):
    data = bytes(range(256)) * 4
    done = put(endpoint, "--stream", stream, "--partition-key", "bin", input=data)
    assert done.returncode == 0, done.stderr
    (record,) = tail_json(endpoint, stream)
    import base64

    assert base64.b64decode(record["dataBase64"]) == data
    raw = tail(endpoint, "--stream", stream, "--format", "raw")
    assert raw == data + b"\n"
    hexed = tail(endpoint, "--stream", stream, "--format", "hex").decode().split()
    assert hexed[2] == "bin" and bytes.fromhex(hexed[3]) == data


def test_aggregated_puts_are_deaggregated_by_the_python_library(endpoint, kinesis, stream, tmp_path):
    path = tmp_path / "lines.txt"
    path.write_text("".join(f"user record {i}\n" for i in range(3000)))
    done = put(endpoint, "--stream", stream, "--file", str(path), "--lines", "--aggregate")
    assert done.returncode == 0, done.stderr
    stored = all_records(kinesis, stream)
    assert len(stored) < 100, "aggregated"
    users = list(iter_deaggregate_records(stored, data_format="Boto3"))
    # The Python library hands data back as base64 in its Lambda shape.
    import base64

    data = sorted(base64.b64decode(u["kinesis"]["data"]).decode() for u in users)
    assert data == sorted(f"user record {i}" for i in range(3000))
    assert all(u["kinesis"]["aggregated"] for u in users)
    # And sluice tail gives the same user records, in put order per shard.
    mine = tail_json(endpoint, stream)
    assert sorted(r["data"] for r in mine) == data
    assert all("subSequenceNumber" in r for r in mine)


def test_python_library_aggregates_are_deaggregated_by_tail(endpoint, kinesis, stream):
    agg = RecordAggregator()
    sent = []
    for i in range(500):
        pk = f"pk-{i % 7}"
        ehk = str(i * 10**30) if i % 5 == 0 else None
        data = f"from python {i}".encode()
        sent.append((pk, ehk, data))
        full = agg.add_user_record(pk, data, ehk)
        assert full is None, "500 small records fit one aggregate"
    pk, ehk, blob = agg.clear_and_get().get_contents()
    kinesis.put_record(StreamName=stream, PartitionKey=pk, ExplicitHashKey=ehk, Data=blob)
    records = tail_json(endpoint, stream)
    assert [r["data"].encode() for r in records] == [d for _, _, d in sent]
    assert [r["partitionKey"] for r in records] == [p for p, _, _ in sent]
    assert [r["subSequenceNumber"] for r in records] == list(range(500))
    # The Python library writes a hash key for every record (its own MD5
    # when none was given): tail hands each back.
    for r, (_, ehk, _) in zip(records, sent):
        if ehk is not None:
            assert r["explicitHashKey"] == ehk
    # Not de-aggregated: the one stored record.
    (raw,) = tail_json(endpoint, stream, "--no-deaggregate")
    assert raw["partitionKey"] == pk


def test_tail_from_positions_and_max_records(endpoint, kinesis, stream):
    first = kinesis.put_record(StreamName=stream, PartitionKey="k", Data=b"a")
    kinesis.put_record(StreamName=stream, PartitionKey="k", Data=b"b")
    kinesis.put_record(StreamName=stream, PartitionKey="k", Data=b"c")
    at = tail(endpoint, "--stream", stream, "--from", first["SequenceNumber"])
    assert at == b"a\nb\nc\n"
    assert tail(endpoint, "--stream", stream, "--max-records", "2") == b"a\nb\n"
    assert tail(endpoint, "--stream", stream, "--from", "latest") == b""
    assert tail(endpoint, "--stream", stream, "--from", "2000-01-01T00:00:00Z") == b"a\nb\nc\n"
    # AWS refuses a time in the future; tail says so.
    future = subprocess.run(
        [BINARY, "tail", "--stream", stream, "--from", "4102444800"], capture_output=True, env=env(endpoint)
    )
    assert future.returncode != 0 and b"InvalidArgumentException" in future.stderr


def test_tail_by_enhanced_fan_out(endpoint, kinesis, stream):
    for i in range(20):
        kinesis.put_record(StreamName=stream, PartitionKey="e", Data=b"efo %d" % i)
    out = tail(endpoint, "--stream", stream, "--efo", "tail-reader")
    assert out.decode().splitlines() == [f"efo {i}" for i in range(20)]
    arn = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamARN"]
    names = [c["ConsumerName"] for c in kinesis.list_stream_consumers(StreamARN=arn)["Consumers"]]
    assert names == ["tail-reader"]


def test_tail_follow_sees_new_records(endpoint, kinesis, stream):
    proc = subprocess.Popen(
        [BINARY, "tail", "--stream", stream, "--from", "latest", "--follow", "--max-records", "3"],
        stdout=subprocess.PIPE,
        env=env(endpoint),
    )
    try:
        # Put until the follower has its three records (its LATEST iterators
        # are taken when it starts, which we do not see from here).
        stop = threading.Event()

        def keep_putting():
            n = 0
            while not stop.is_set() and n < 10000:
                kinesis.put_record(StreamName=stream, PartitionKey="f", Data=b"x%d" % n)
                n += 1
                stop.wait(0.02)

        t = threading.Thread(target=keep_putting)
        t.start()
        out, _ = proc.communicate(timeout=60)
        stop.set()
        t.join()
    finally:
        proc.kill()
    lines = out.splitlines()
    assert len(lines) == 3
    numbers = [int(line[1:]) for line in lines]
    assert numbers == list(range(numbers[0], numbers[0] + 3)), "in order, none skipped"


def test_errors_are_said_plainly(endpoint):
    done = put(endpoint, "--stream", "no-such-stream", input=b"x")
    assert done.returncode != 0
    assert b"ResourceNotFoundException" in done.stderr
    out = subprocess.run(
        [BINARY, "tail", "--stream", "s", "--from", "yesterday"],
        capture_output=True,
        env=env(endpoint),
    )
    assert out.returncode != 0 and b"--from takes" in out.stderr
    # A line longer than a record may be.
    done = put(endpoint, "--stream", "no-such-stream", "--lines", input=b"x" * (10 << 20 | 1))
    assert done.returncode != 0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_put_survives_a_server_killed_and_restarted(tmp_path):
    """kill -9 of the server while `sluice put` runs: the producer retries
    until the server is back, and every line is in the stream afterwards
    (some perhaps twice: a request in flight at the kill may have landed)."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    port = free_port()
    listen = f"127.0.0.1:{port}"
    endpoint = f"http://{listen}"

    def serve():
        proc = subprocess.Popen(
            [BINARY, "serve", "--listen", listen, "--data-dir", str(data_dir), "--limits", "off"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout.readline().startswith("sluice listening on ")
        return proc

    server = serve()
    try:
        kinesis = client(endpoint)
        kinesis.create_stream(StreamName="killed", ShardCount=2)
        lines = [f"line {i:07d}" for i in range(200_000)]
        writer = subprocess.Popen(
            [BINARY, "put", "--stream", "killed", "--lines", "--record-ttl", "0", "--partition-key", "k", "--aggregate"],
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env(endpoint),
        )
        # Feed half, kill the server, feed the rest, bring the server back.
        half = len(lines) // 2
        writer.stdin.write("".join(l + "\n" for l in lines[:half]).encode())
        writer.stdin.flush()
        # Kill once the writer is under way.
        for _ in range(10000):
            if all_records(kinesis, "killed"):
                break
        server.send_signal(signal.SIGKILL)
        server.wait()
        writer.stdin.write("".join(l + "\n" for l in lines[half:]).encode())
        writer.stdin.close()
        server = serve()
        err = writer.stderr.read()
        writer.wait(timeout=240)
        assert writer.returncode == 0, err
        retries = int(err.decode().split(" entries retried")[0].rsplit(" ", 1)[1])
        assert retries > 0, err
        got = tail(endpoint, "--stream", "killed").decode().splitlines()
        assert set(got) == set(lines), "every line is in"
        # One key, ordered: the first time each line appears, lines are in order.
        seen, firsts = set(), []
        for line in got:
            if line not in seen:
                seen.add(line)
                firsts.append(line)
        assert firsts == lines
    finally:
        server.terminate()
        server.wait()
