"""Firehose delivery into buckets on an S3-compatible endpoint, through
`--firehose-s3 BUCKET=URL`: a real S3 server separate from Sluice (moto's
server from PyPI, in a process of its own, which the test command
installs), its objects read back with boto3's S3 client.

moto was chosen because it is the S3 server most Python projects test
against, is a pip install with no daemon or cluster to set up, and checks
what an S3 client sends (multipart uploads, ETags, missing buckets). It keeps
its data in memory, so a restart of it starts empty: the restart test checks
what Sluice delivers after the server comes back, and that nothing
acknowledged is lost while it was gone.

AWS's behaviour pinned (developer guide, "Understand data delivery in
Amazon Data Firehose"): objects are named as for any S3 destination; a
failed delivery to S3 is retried (for up to 24 hours) and the records are
delivered once the bucket takes them, never dropped."""
import gzip
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

import boto3
import pytest

from conftest import sluice
from test_firehose import S3, firehose
from test_firehose_delivery import UUID, control, utc

MOTO = """
import sys, threading
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=int(sys.argv[1]), verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
threading.Event().wait()
"""


class Moto:
    """moto's S3 server in a process of its own."""

    def __init__(self, port=0):
        self.proc = subprocess.Popen([sys.executable, "-c", MOTO, str(port)], stdout=subprocess.PIPE, text=True)
        self.port = int(self.proc.stdout.readline())
        self.url = f"http://127.0.0.1:{self.port}"

    def s3(self):
        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id="moto-key", aws_secret_access_key="moto-secret")

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


def listing(s3, bucket):
    """Every object of `bucket`: key -> (bytes, ETag)."""
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for o in page.get("Contents", []):
            out[o["Key"]] = (s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read(), o["ETag"])
    return out


def until(what, seconds=60):
    """Polls `what` (real time: deliveries retry on a real-time backoff)
    until it is true."""
    deadline = time.monotonic() + seconds
    while not what():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def remote():
    """A moto server, and a Sluice on the frozen clock whose buckets
    `landing` and `big` are on it (credentials in the URL) and every other
    bucket too (`*`, credentials from the environment)."""
    moto = Moto()
    env = dict(os.environ, AWS_ACCESS_KEY_ID="env-key", AWS_SECRET_ACCESS_KEY="env-secret")
    creds = f"http://moto-key:moto%2Fsecret@127.0.0.1:{moto.port}"
    try:
        with sluice("--limits", "off", "--test-controls", "--firehose-s3", f"landing={creds}",
                    "--firehose-s3", f"big={creds}?region=eu-west-1",
                    "--firehose-s3", f"*=http://127.0.0.1:{moto.port}", env=env) as (proc, endpoint):
            control(endpoint, "clock", {"freeze": True})

            def advance(ms):
                return control(endpoint, "clock", {"advanceMs": ms})["nowMs"]

            data_dir = proc.args[proc.args.index("--data-dir") + 1]
            yield moto, endpoint, data_dir, advance
    finally:
        moto.kill()


def test_objects_land_in_the_remote_bucket_named_as_aws_names_them(remote):
    moto, endpoint, data_dir, advance = remote
    s3 = moto.s3()
    s3.create_bucket(Bucket="landing")
    f = firehose(endpoint)
    f.create_delivery_stream(DeliveryStreamName="remote", S3DestinationConfiguration=dict(
        S3, BucketARN="arn:aws:s3:::landing", Prefix="in/", CompressionFormat="GZIP",
        BufferingHints={"SizeInMBs": 1, "IntervalInSeconds": 60}))
    arrival = advance(0)
    f.put_record_batch(DeliveryStreamName="remote", Records=[{"Data": b"one\n"}, {"Data": b"two\n"}])
    advance(60_000)
    [(key, (body, _))] = listing(s3, "landing").items()
    t = utc(arrival)
    # A prefix without expressions gets AWS's `yyyy/MM/dd/HH/` after it.
    assert re.fullmatch(rf"in/{t:%Y/%m/%d/%H}/remote-1-{t:%Y-%m-%d-%H-%M-%S}-{UUID}\.gz", key), key
    assert gzip.decompress(body) == b"one\ntwo\n"
    # Nothing of it under the data directory: not in a bucket directory,
    # no temporary file left behind.
    left = [p for p in (os.path.join(r, n) for r, _, ns in os.walk(os.path.join(data_dir, "s3")) for n in ns)]
    assert left == []
    f.delete_delivery_stream(DeliveryStreamName="remote")


def test_an_object_over_8_mib_is_a_multipart_upload(remote):
    moto, endpoint, _, advance = remote
    s3 = moto.s3()
    s3.create_bucket(Bucket="big", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    f = firehose(endpoint)
    f.create_delivery_stream(DeliveryStreamName="large", S3DestinationConfiguration=dict(
        S3, BucketARN="arn:aws:s3:::big", BufferingHints={"SizeInMBs": 20, "IntervalInSeconds": 60}))
    records = [os.urandom(1000) + b"\n" for _ in range(3_900)]
    for i in range(0, len(records), 500):
        f.put_record_batch(DeliveryStreamName="large", Records=[{"Data": d} for d in records[i:i + 500]])
    for i in range(2):
        f.put_record_batch(DeliveryStreamName="large", Records=[{"Data": b"x" * 1_000_000}] * 3)
    advance(60_000)
    [(key, (body, etag))] = listing(s3, "big").items()
    assert body == b"".join(records) + b"x" * 6_000_000
    assert len(body) > 9 << 20
    # A multipart upload's ETag ends with its number of parts.
    assert re.fullmatch(r'"[0-9a-f]{32}-2"', etag), etag
    f.delete_delivery_stream(DeliveryStreamName="large")


def test_a_missing_bucket_is_retried_until_it_exists(remote):
    """Any bucket not named goes to `*`'s endpoint (credentials from the
    environment). While it does not exist the delivery fails and is
    retried, and the failure is counted; then it arrives."""
    moto, endpoint, _, advance = remote
    s3 = moto.s3()
    f = firehose(endpoint)
    f.create_delivery_stream(DeliveryStreamName="later", S3DestinationConfiguration=dict(
        S3, BucketARN="arn:aws:s3:::made-later", BufferingHints={"SizeInMBs": 1, "IntervalInSeconds": 0}))
    f.put_record(DeliveryStreamName="later", Record={"Data": b"patience"})
    advance(0)

    def metrics():
        return urllib.request.urlopen(endpoint + "/metrics").read().decode()

    until(lambda: re.search(r'sluice_firehose_failed_deliveries_total\{[^}]*later[^}]*\} [1-9]', metrics()))
    s3.create_bucket(Bucket="made-later")
    until(lambda: listing(s3, "made-later"))
    assert [b for b, _ in listing(s3, "made-later").values()] == [b"patience"]
    f.delete_delivery_stream(DeliveryStreamName="later")


def test_a_crash_and_restart_of_the_s3_server_loses_no_acknowledged_record():
    """moto is killed (-9) while records are buffered and delivered; Sluice
    keeps retrying; moto comes back on the same port, empty (it keeps its
    data in memory), the bucket is made again, and every record acknowledged
    after the last delivery moto confirmed arrives, with nothing lost."""
    moto = Moto()
    with tempfile.TemporaryDirectory() as data_dir:
        spec = f"events=http://k:s@127.0.0.1:{moto.port}"
        try:
            with sluice("--limits", "off", "--firehose-s3", spec, data_dir=data_dir) as (_, endpoint):
                s3 = moto.s3()
                s3.create_bucket(Bucket="events")
                f = firehose(endpoint)
                f.create_delivery_stream(DeliveryStreamName="events", S3DestinationConfiguration=dict(
                    S3, BucketARN="arn:aws:s3:::events", BufferingHints={"SizeInMBs": 1, "IntervalInSeconds": 0}))
                before = [f"before-{i:04d}\n".encode() for i in range(100)]
                f.put_record_batch(DeliveryStreamName="events", Records=[{"Data": d} for d in before])
                until(lambda: b"".join(sorted(b for b, _ in listing(s3, "events").values())).count(b"\n") == 100)
                moto.kill()
                after = [f"after-{i:04d}\n".encode() for i in range(300)]
                for i in range(0, 300, 100):
                    out = f.put_record_batch(DeliveryStreamName="events",
                                             Records=[{"Data": d} for d in after[i:i + 100]])
                    assert out["FailedPutCount"] == 0
                moto = Moto(moto.port)
                s3 = moto.s3()
                s3.create_bucket(Bucket="events")

                def delivered():
                    lines = b"".join(b for b, _ in listing(s3, "events").values()).splitlines(keepends=True)
                    return set(after) <= set(lines)

                until(delivered)
                lines = b"".join(b for b, _ in listing(s3, "events").values()).splitlines(keepends=True)
                assert set(lines) <= set(after) | set(before)
        finally:
            moto.kill()


def test_a_stalled_s3_server_times_out_and_the_delivery_is_retried_elsewhere_in_time():
    """An endpoint that takes the connection and never answers: each
    request times out (--firehose-http-timeout-ms), the delivery fails and
    is retried; once a real server listens there, it arrives."""
    import socket
    stall = socket.socket()
    stall.bind(("127.0.0.1", 0))
    stall.listen(64)
    port = stall.getsockname()[1]
    moto = None
    try:
        with sluice("--limits", "off", "--firehose-http-timeout-ms", "300",
                    "--firehose-s3", f"slow=http://k:s@127.0.0.1:{port}") as (_, endpoint):
            f = firehose(endpoint)
            f.create_delivery_stream(DeliveryStreamName="slow", S3DestinationConfiguration=dict(
                S3, BucketARN="arn:aws:s3:::slow", BufferingHints={"SizeInMBs": 1, "IntervalInSeconds": 0}))
            f.put_record(DeliveryStreamName="slow", Record={"Data": b"late"})

            def failures():
                text = urllib.request.urlopen(endpoint + "/metrics").read().decode()
                m = re.search(r'sluice_firehose_failed_deliveries_total\{[^}]*slow[^}]*\} (\d+)', text)
                return int(m.group(1)) if m else 0

            until(lambda: failures() >= 1)
            stall.close()
            moto = Moto(port)
            moto.s3().create_bucket(Bucket="slow")
            until(lambda: listing(moto.s3(), "slow"))
            assert [b for b, _ in listing(moto.s3(), "slow").values()] == [b"late"]
    finally:
        stall.close()
        if moto:
            moto.kill()


def test_a_bad_firehose_s3_setting_stops_the_server_with_a_reason():
    for spec, says in [("landing", "BUCKET=URL"), ("landing=ftp://k:s@h", "http:// or https://"),
                       ("Landing=http://k:s@h", "not a bucket name"), ("landing=http://h", "AWS_ACCESS_KEY_ID")]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        with tempfile.TemporaryDirectory() as data_dir:
            run = subprocess.run([os.environ.get("SLUICE_BIN", "target/debug/sluice"), "serve", "--listen",
                                  "127.0.0.1:0", "--data-dir", data_dir, "--firehose-s3", spec],
                                 capture_output=True, text=True, env=env, timeout=30)
        assert run.returncode == 2, run
        assert says in run.stderr, run.stderr
        assert ":s@" not in run.stderr
