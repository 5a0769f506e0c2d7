"""`sluice agent` as a user runs it: an agent.json, real files that grow and
rotate, kill -9 and restarts, into a Kinesis stream and a Firehose delivery
stream of a real `sluice serve`."""
import json
import os
import signal
import subprocess
import time

from conftest import BINARY, client, sluice
from test_client import all_records, env
from test_firehose import S3, firehose
from test_firehose_delivery import objects


def agent(endpoint, config_path, checkpoints):
    return subprocess.Popen(
        [BINARY, "agent", "--config", str(config_path), "--checkpoints", str(checkpoints), "--progress-seconds", "0"],
        stderr=subprocess.PIPE,
        env=env(endpoint),
    )


def write_config(path, endpoint, flows):
    path.write_text(json.dumps({"kinesis.endpoint": endpoint, "firehose.endpoint": endpoint, "flows": flows}))


def until(what, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = what()
        if got:
            return got
        time.sleep(0.05)
    return what()


def data(kinesis, stream):
    """The records' data; the agent sends each line with its newline."""
    records = [r["Data"].decode() for r in all_records(kinesis, stream)]
    assert all(r.endswith("\n") for r in records)
    return [r[:-1] for r in records]


def append(path, lines):
    with open(path, "a") as f:
        for line in lines:
            f.write(line + "\n")


def test_kill_9_and_restart_lose_nothing(tmp_path):
    with sluice("--limits", "off") as (_, endpoint):
        kinesis = client(endpoint)
        kinesis.create_stream(StreamName="agent-logs", ShardCount=2)
        log = tmp_path / "app.log"
        log.write_text("")
        config = tmp_path / "agent.json"
        write_config(config, endpoint, [{
            "filePattern": str(tmp_path / "app.log*"), "kinesisStream": "agent-logs",
            "initialPosition": "START_OF_FILE", "maxBufferAgeMillis": 1000, "maxBufferSizeRecords": 100,
        }])
        checkpoints = tmp_path / "checkpoints.json"
        proc = agent(endpoint, config, checkpoints)
        sent = [f"line {i:06d}" for i in range(3000)]
        append(log, sent[:1000])
        assert until(lambda: len(data(kinesis, "agent-logs")) >= 500)
        # Killed mid-stream: no chance to send or checkpoint.
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        append(log, sent[1000:2000])
        # Rotated while it was down.
        os.rename(log, tmp_path / "app.log.1")
        append(log, sent[2000:])
        proc = agent(endpoint, config, checkpoints)
        got = until(lambda: (lambda d: d if set(d) >= set(sent) else None)(data(kinesis, "agent-logs")))
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert b"stopped:" in err
        assert set(got) == set(sent), "every line is in"
        # Duplicates only from what was sent and not yet checkpointed at
        # the kill: at most a few of the agent's batches.
        assert len(got) - len(sent) <= 1000, len(got) - len(sent)
        # Nothing more after a clean stop and a restart.
        before = len(data(kinesis, "agent-logs"))
        proc = agent(endpoint, config, checkpoints)
        time.sleep(0)  # the agent scans at once
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
        assert len(data(kinesis, "agent-logs")) == before


def test_a_firehose_flow_delivers_lines(tmp_path):
    data_dir = tmp_path / "data"
    with sluice(data_dir=data_dir) as (_, endpoint):
        f = firehose(endpoint)
        f.create_delivery_stream(DeliveryStreamName="agent-fh", S3DestinationConfiguration=dict(
            S3, BucketARN="arn:aws:s3:::agentbucket", BufferingHints={"SizeInMBs": 1, "IntervalInSeconds": 0}))
        log = tmp_path / "fh.log"
        append(log, ["header to skip", *[f"fh {i}" for i in range(50)]])
        config = tmp_path / "agent.json"
        write_config(config, endpoint, [{
            "filePattern": str(log), "deliveryStream": "agent-fh", "initialPosition": "START_OF_FILE",
            "skipHeaderLines": 1, "maxBufferAgeMillis": 1000,
        }])
        proc = agent(endpoint, config, tmp_path / "cp.json")
        try:
            def delivered():
                got = b"".join(objects(data_dir, "agentbucket").values())
                return got if got.count(b"fh ") >= 50 else None
            got = until(delivered)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=60)
        # Firehose concatenates records as they are; the agent sends each
        # line with its newline, so objects are lines.
        assert got == b"".join(f"fh {i}\n".encode() for i in range(50))


def test_a_bad_agent_json_is_refused_plainly(tmp_path, endpoint):
    config = tmp_path / "agent.json"
    config.write_text(json.dumps({"flows": [{"filePattern": "/tmp/x.log", "kinesisStream": "s", "maxBufferSizeRecords": 9999}]}))
    out = subprocess.run([BINARY, "agent", "--config", str(config)], capture_output=True, env=env(endpoint), timeout=60)
    assert out.returncode != 0 and b"maxBufferSizeRecords" in out.stderr
    config.write_text(json.dumps({"flows": [{"filePattern": "/tmp/x.log", "kinesisStream": "no-such-stream"}]}))
    out = subprocess.run([BINARY, "agent", "--config", str(config), "--checkpoints", str(tmp_path / "c.json")],
                         capture_output=True, env=env(endpoint), timeout=60)
    assert out.returncode != 0 and b"ResourceNotFoundException" in out.stderr
