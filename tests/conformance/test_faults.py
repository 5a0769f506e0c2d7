"""Faults against the real binary, as an operator would meet them: bit rot in
a shard's segments (quarantine, the start-up log, /health, `ctl check` and
`ctl repair`) and in the journal (`ctl repair --cut-journal`), a full disk (a real tmpfs), and a flood of idle connections
under a low open-file limit."""
import contextlib
import os
import pathlib
import resource
import select
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from botocore.exceptions import ClientError

from conftest import BINARY, client, sluice

@contextlib.contextmanager
def serve(data_dir, *args, preexec_fn=None):
    """`sluice serve` on `data_dir` (kept across restarts), limits off, its
    standard error piped for the test to read."""
    with sluice(
        "--limits", "off", *args,
        data_dir=data_dir, stderr=subprocess.PIPE, preexec_fn=preexec_fn,
    ) as server:
        yield server


def ctl(*args):
    return subprocess.run([BINARY, "ctl", *map(str, args)], capture_output=True, text=True)


def health(endpoint):
    try:
        with urllib.request.urlopen(endpoint + "/health") as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


_unread = {}


def stderr_line_with(proc, needle):
    """The first line of the server's standard error that holds `needle`
    (read as the server writes it; the timeout only stops a hang). Reads the
    pipe's descriptor itself: a buffered readline could take several lines
    at once and leave select() waiting for more."""
    fd = proc.stderr.fileno()
    seen = []
    while True:
        pending = _unread.setdefault(proc, b"")
        while b"\n" not in pending:
            ready, _, _ = select.select([fd], [], [], 60)
            assert ready, f"no {needle!r} in {seen}"
            chunk = os.read(fd, 65536)
            assert chunk, f"no {needle!r} in {seen + [pending.decode()]}"
            pending += chunk
        line, _, pending = pending.partition(b"\n")
        _unread[proc] = pending
        line = line.decode() + "\n"
        if needle in line:
            return line
        seen.append(line)


def segments(data_dir):
    return sorted(pathlib.Path(data_dir, "log", "shards").glob("*/*.seg"))


def read_all(k, stream):
    it = k.get_shard_iterator(
        StreamName=stream, ShardId="shardId-000000000000", ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    out = []
    while True:
        r = k.get_records(ShardIterator=it)
        out += [x["Data"] for x in r["Records"]]
        if not r["Records"]:
            return out
        it = r["NextShardIterator"]


@pytest.mark.parametrize("where", ["newest", "sealed"])
def test_bit_rot_quarantines_the_shard_and_repair_keeps_the_rest(tmp_path, where):
    data = tmp_path / "data"
    records = [b"record-%03d-" % i + b"x" * 90 for i in range(130)]
    with serve(data, "--segment-bytes", "4096") as (_, endpoint):
        k = client(endpoint)
        k.create_stream(StreamName="rot", ShardCount=1)
        seqs = [
            k.put_record(StreamName="rot", PartitionKey="k", Data=d)["SequenceNumber"]
            for d in records
        ]
    files = segments(data)
    assert len(files) > 3
    victim = files[-1] if where == "newest" else files[1]
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 2] ^= 0x10
    victim.write_bytes(raw)

    check = ctl("check", data)
    assert check.returncode == 1, check.stdout + check.stderr
    assert "CORRUPT" in check.stdout and "ctl repair" in check.stdout

    with serve(data, "--segment-bytes", "4096") as (proc, endpoint):
        # Said at start (the newest segment is checked at open; older ones
        # right after, in the background).
        line = stderr_line_with(proc, "quarantined")
        assert "rot" in line and "shardId-000000000000" in line, line
        status, body = health(endpoint)
        assert status == 503 and "quarantined" in body, body
        k = client(endpoint)
        it = k.get_shard_iterator(
            StreamName="rot", ShardId="shardId-000000000000", ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        got = []
        while True:
            try:
                r = k.get_records(ShardIterator=it)
            except ClientError as e:
                error = e.response["Error"]
                break
            got += [x["Data"] for x in r["Records"]]
            it = r["NextShardIterator"]
        # Everything before the damage reads; the read at it is refused, clearly.
        assert got == records[: len(got)] and 0 < len(got) < 129
        assert error["Code"] == "InternalFailure"
        message = error["Message"]
        assert "stream rot" in message and "shardId-000000000000" in message, message
        assert seqs[len(got)] in message, message
        assert str(data) not in message and ".seg" not in message, message
        with pytest.raises(ClientError) as again:
            k.get_records(ShardIterator=it)
        assert again.value.response["Error"]["Message"] == message
        with pytest.raises(ClientError) as put:
            k.put_record(StreamName="rot", PartitionKey="k", Data=b"refused")
        assert put.value.response["Error"]["Code"] == "InternalFailure"
        assert "quarantined" in put.value.response["Error"]["Message"]
        batch = k.put_records(StreamName="rot", Records=[{"PartitionKey": "k", "Data": b"x"}])
        assert batch["FailedRecordCount"] == 1
        assert "quarantined" in batch["Records"][0]["ErrorMessage"]
        status, _ = health(endpoint)
        assert status == 503
        # A checkpoint past the damage gets the same clear refusal.
        with pytest.raises(ClientError) as at:
            k.get_shard_iterator(
                StreamName="rot", ShardId="shardId-000000000000",
                ShardIteratorType="AT_SEQUENCE_NUMBER", StartingSequenceNumber=seqs[len(got) + 1],
            )
        assert "quarantined" in at.value.response["Error"]["Message"]
        # Repair refuses to run under a live server.
        busy = ctl("repair", data)
        assert busy.returncode == 2 and "in use" in busy.stderr, busy.stderr

    repair = ctl("repair", data)
    assert repair.returncode == 0, repair.stdout + repair.stderr
    assert "skipped" in repair.stdout, repair.stdout
    assert ctl("check", data).returncode == 0

    with serve(data, "--segment-bytes", "4096") as (_, endpoint):
        assert health(endpoint) == (200, "ok")
        k = client(endpoint)
        k.put_record(StreamName="rot", PartitionKey="k", Data=b"after")
        # Only the damaged record is gone; every other is back, in order.
        assert read_all(k, "rot") == records[: len(got)] + records[len(got) + 1:] + [b"after"]


def test_a_damaged_journal_stops_the_server_until_an_operator_cuts_it(tmp_path):
    data = tmp_path / "data"
    with serve(data) as (proc, endpoint):
        k = client(endpoint)
        k.create_stream(StreamName="j", ShardCount=1)
        for d in (b"first", b"second-second", b"third"):
            k.put_record(StreamName="j", PartitionKey="k", Data=d)
        # Killed at once: the journal holds all three (no checkpoint since).
        proc.kill()
        proc.wait()
    # Rot in the middle entry: the third was written after the second was
    # durable, so this is damage, not a torn tail.
    held = [f for f in (data / "log" / "journal").glob("*.wal") if b"second-second" in f.read_bytes()]
    assert len(held) == 1, held
    at = held[0].read_bytes().rfind(b"second-second")
    with open(held[0], "r+b") as f:
        f.seek(at)
        f.write(b"S")

    started = subprocess.run(
        [BINARY, "serve", "--listen", "127.0.0.1:0", "--data-dir", str(data)],
        capture_output=True, text=True, timeout=60,
    )
    assert started.returncode != 0
    assert "journal is damaged" in started.stderr and str(held[0]) in started.stderr
    assert "ctl repair --cut-journal" in started.stderr
    # Said once, not twice.
    assert started.stderr.count("journal is damaged") == 1, started.stderr
    check = ctl("check", data)
    assert check.returncode == 1 and "--cut-journal" in check.stdout, check.stdout
    refused = ctl("repair", data)
    assert refused.returncode != 0 and "journal is damaged" in refused.stderr, refused
    cut = ctl("repair", "--cut-journal", data)
    assert cut.returncode == 0, cut.stderr
    assert "journal cut at the damage" in cut.stdout, cut.stdout
    assert ctl("check", data).returncode == 0

    # What came before the damage is back; what followed it is lost.
    with serve(data) as (_, endpoint):
        k = client(endpoint)
        assert read_all(k, "j") == [b"first"]
        k.put_record(StreamName="j", PartitionKey="k", Data=b"after")
        assert read_all(k, "j") == [b"first", b"after"]


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: " + done.stderr.decode())
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_fails_writes_clearly_and_recovers_without_a_restart(small_disk):
    data = small_disk / "data"
    with serve(data, "--segment-bytes", "1048576") as (proc, endpoint):
        k = client(endpoint)
        k.create_stream(StreamName="keep", ShardCount=1)
        k.create_stream(StreamName="filler", ShardCount=1)
        k.put_record(StreamName="keep", PartitionKey="a", Data=b"before")
        # Fill the disk to the last page, with ever smaller records.
        failed = None
        for size in (1000 << 10, 64 << 10, 4 << 10, 256, 16, 1):
            for i in range(200):
                try:
                    k.put_record(StreamName="filler", PartitionKey=str(i), Data=b"f" * size)
                except ClientError as e:
                    failed = e.response["Error"]
                    break
        assert failed["Code"] == "InternalFailure", failed
        assert "/" not in failed["Message"]
        with pytest.raises(ClientError) as full:
            k.put_record(StreamName="keep", PartitionKey="a", Data=b"k" * 8192)
        assert full.value.response["Error"]["Code"] == "InternalFailure"
        status, body = health(endpoint)
        assert status == 503 and "No space left on device" in body, body
        # Creating needs space too: it fails, and leaves nothing behind.
        with pytest.raises(ClientError) as create:
            k.create_stream(StreamName="later", ShardCount=2)
        assert create.value.response["Error"]["Code"] == "InternalFailure"

        # Space can always be freed through the API.
        started = time.monotonic()
        k.delete_stream(StreamName="filler")
        # No restart: writes, creation and resharding work again.
        k.put_record(StreamName="keep", PartitionKey="a", Data=b"after")
        recovered_s = time.monotonic() - started
        k.create_stream(StreamName="later", ShardCount=2)
        k.split_shard(
            StreamName="later",
            ShardToSplit="shardId-000000000000",
            NewStartingHashKey=str(2**126),
        )
        h = health(endpoint)
        assert h == (200, "ok"), h[1]
        assert read_all(k, "keep") == [b"before", b"after"]
        print(f"recovered {recovered_s * 1000:.0f} ms after DeleteStream began")
    assert "No space left on device" in proc.stderr.read()


def cpu_seconds(pid):
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_idle_sockets_at_the_descriptor_limit_lock_no_one_out(tmp_path):
    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    with serve(tmp_path / "data", "--header-timeout-ms", "300", preexec_fn=low_limit) as (
        proc,
        endpoint,
    ):
        host, port = endpoint.removeprefix("http://").split(":")
        k = client(endpoint)
        k.create_stream(StreamName="busy", ShardCount=1)
        # More idle sockets than the server has descriptors.
        hogs = [socket.create_connection((host, int(port))) for _ in range(400)]
        cpu_before, wall_before = cpu_seconds(proc.pid), time.monotonic()
        # The connection this client keeps is served on; a new client is
        # served once the timeouts have closed the idle ones ahead of it.
        k.put_record(StreamName="busy", PartitionKey="a", Data=b"1")
        fresh = client(endpoint)
        fresh.put_record(StreamName="busy", PartitionKey="a", Data=b"2")
        cpu = cpu_seconds(proc.pid) - cpu_before
        wall = time.monotonic() - wall_before
        for hog in hogs:
            hog.close()
        # An accept loop that spins at the limit burns a core; one that backs
        # off (here: never reaches it) does not.
        assert cpu < 0.5 * wall + 0.5, (cpu, wall)
        assert read_all(fresh, "busy") == [b"1", b"2"]


def test_firehose_delivery_to_a_full_disk_retries_and_loses_nothing(small_disk):
    """Records acknowledged into a delivery stream stay in the log while the
    disk is too full for their object: the delivery fails (logged, counted,
    no partial object in the bucket) and is retried; once space is freed the
    object arrives whole."""
    import json

    from test_firehose import S3, firehose

    def control(endpoint, body):
        req = urllib.request.Request(endpoint + "/_sluice/clock", json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req).read()

    data = small_disk / "data"
    with serve(data, "--segment-bytes", "1048576", "--test-controls") as (proc, endpoint):
        control(endpoint, {"freeze": True})
        f = firehose(endpoint)
        f.create_delivery_stream(DeliveryStreamName="full", S3DestinationConfiguration=dict(
            S3, BucketARN="arn:aws:s3:::full", BufferingHints={"SizeInMBs": 8, "IntervalInSeconds": 60}))
        records = [bytes([97 + i % 26]) * 10_000 for i in range(30)]
        for i in range(0, 30, 10):
            out = f.put_record_batch(DeliveryStreamName="full", Records=[{"Data": r} for r in records[i:i + 10]])
            assert out["FailedPutCount"] == 0
        k = client(endpoint)
        k.create_stream(StreamName="filler", ShardCount=1)
        for size in (1000 << 10, 64 << 10, 4 << 10, 256, 16, 1):
            for i in range(200):
                try:
                    k.put_record(StreamName="filler", PartitionKey=str(i), Data=b"f" * size)
                except ClientError:
                    break
        bucket = data / "s3" / "full"
        control(endpoint, {"advanceMs": 60_000})
        assert "No space left on device" in stderr_line_with(proc, "delivering full failed")
        assert not bucket.exists() or not any(p.is_file() for p in bucket.rglob("*")), "no partial object"
        assert not any((data / "s3" / ".sluice-tmp").glob("*")), "the failed attempt's file is gone"
        k.delete_stream(StreamName="filler")
        control(endpoint, {"advanceMs": 0})
        [obj] = [p for p in bucket.rglob("*") if p.is_file()]
        assert obj.read_bytes() == b"".join(records)
