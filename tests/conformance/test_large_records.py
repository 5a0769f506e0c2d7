"""Records larger than a stream takes, through `sluice put` and `sluice
tail`: each mode of --large-records, claim checks in a real S3-compatible
server (moto), and envelopes written by hand in Python from
docs/large-records.md (the format is for other languages too)."""
import base64
import gzip
import hashlib
import json
import os
import random
import struct
import subprocess

import pytest

from conftest import BINARY
from test_client import all_records, env, put
from test_firehose_s3 import Moto

MAGIC = b"\xf5LR1"


def envelope(header, payload=b""):
    """An envelope as docs/large-records.md lays it out."""
    text = json.dumps(header, separators=(",", ":")).encode()
    return MAGIC + struct.pack(">I", len(text)) + text + payload


def crc32c(data):
    """CRC-32C (Castagnoli), bit by bit: the test needs no extra package."""
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def tail_raw(endpoint, stream, *args, check=True):
    out = subprocess.run(
        [BINARY, "tail", "--stream", stream, "--format", "json", *args],
        capture_output=True,
        env=env(endpoint),
        timeout=300,
    )
    if check:
        assert out.returncode == 0, out.stderr
    records = [json.loads(line) for line in out.stdout.decode().splitlines()]
    return out, records


def data_of(record):
    if "data" in record:
        return record["data"].encode()
    return base64.b64decode(record["dataBase64"])


def blob(n, seed):
    rng = random.Random(seed)
    # Half random bytes, half runs: compresses to about half.
    return bytes(rng.randrange(256) if i % 2 else seed % 256 for i in range(n))


@pytest.mark.parametrize(
    "mode",
    ["auto", "chunk", "compress", "claim-check"],
)
def test_each_mode_carries_a_record_past_the_limit(endpoint, kinesis, stream, tmp_path, mode):
    data = blob(2_500_000, 7)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    store = ["--large-store", str(tmp_path / "objects")]
    done = put(endpoint, "--stream", stream, "--file", str(path), "--partition-key", "big",
               "--large-records", mode, *store)
    assert done.returncode == 0, done.stderr
    assert b"put 1 records (2500000 bytes)" in done.stderr
    stored = all_records(kinesis, stream)
    assert all(len(r["Data"]) <= 1 << 20 for r in stored)
    assert all(r["Data"].startswith(MAGIC) for r in stored)
    _, records = tail_raw(endpoint, stream, *store)
    assert len(records) == 1 and data_of(records[0]) == data
    if mode == "claim-check":
        assert len(stored) == 1
        (header_len,) = struct.unpack(">I", stored[0]["Data"][4:8])
        pointer = json.loads(stored[0]["Data"][8 : 8 + header_len])
        assert pointer["t"] == "claim-check" and pointer["size"] == len(data)
        assert pointer["sha256"] == hashlib.sha256(data).hexdigest()
        obj = tmp_path / "objects" / pointer["bucket"] / pointer["key"]
        assert obj.read_bytes() == data
    # Without opening envelopes, tail prints what is stored.
    _, raw = tail_raw(endpoint, stream, "--no-large-records", *store)
    assert len(raw) == len(stored)


@pytest.mark.parametrize("codec", ["gzip", "zstd", "lz4", "snappy"])
def test_every_codec(endpoint, kinesis, stream, codec):
    text = "".join(f"line {i} of a log that compresses well\n" for i in range(20000)).encode()
    done = put(endpoint, "--stream", stream, "--large-records", "compress", "--codec", codec, input=text)
    assert done.returncode == 0, done.stderr
    (stored,) = all_records(kinesis, stream)
    (header_len,) = struct.unpack(">I", stored["Data"][4:8])
    assert json.loads(stored["Data"][8 : 8 + header_len])["codec"] == codec
    assert len(stored["Data"]) < len(text) // 5
    _, records = tail_raw(endpoint, stream)
    assert data_of(records[0]) == text


def test_claim_checks_in_an_s3_compatible_bucket(endpoint, kinesis, stream):
    moto = Moto()
    try:
        s3 = moto.s3()
        s3.create_bucket(Bucket="large")
        spec = f"s3://large?endpoint={moto.url}"
        data = blob(3_000_000, 9)
        done = put(endpoint, "--stream", stream, "--large-records", "claim-check", "--large-store", spec, input=data)
        assert done.returncode == 0, done.stderr
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="large").get("Contents", [])]
        assert len(keys) == 1 and keys[0].startswith(stream + "/")
        assert s3.get_object(Bucket="large", Key=keys[0])["Body"].read() == data
        _, records = tail_raw(endpoint, stream, "--large-store", spec)
        assert data_of(records[0]) == data
        # A missing object is reported, and tail fails.
        s3.delete_object(Bucket="large", Key=keys[0])
        out, records = tail_raw(endpoint, stream, "--large-store", spec, check=False)
        assert out.returncode == 1 and records == []
        assert b"warning:" in out.stderr and keys[0].encode() in out.stderr
    finally:
        moto.kill()


def test_envelopes_written_by_another_language(endpoint, kinesis, stream):
    """A Python producer following docs/large-records.md: chunks (out of
    order, one duplicated) of a gzip-compressed message, and a lone
    compressed record."""
    message = blob(1_800_000, 11)
    packed = gzip.compress(message)
    inner = envelope({"t": "compressed", "codec": "gzip", "size": len(message), "crc32c": crc32c(message)}, packed)
    size = 400_000
    parts = [inner[i : i + size] for i in range(0, len(inner), size)]
    digest = hashlib.sha256(inner).hexdigest()
    chunks = [
        envelope(
            {"t": "chunk", "id": "0123456789abcdef0123456789abcdef", "index": i, "count": len(parts),
             "size": len(inner), "sha256": digest, "crc32c": crc32c(p)},
            p,
        )
        for i, p in enumerate(parts)
    ]
    for c in [chunks[1], chunks[0], *chunks[2:], chunks[0]]:
        kinesis.put_record(StreamName=stream, PartitionKey="py", Data=c)
    small = b"small and plain"
    kinesis.put_record(StreamName=stream, PartitionKey="py", Data=envelope(
        {"t": "compressed", "codec": "gzip", "size": len(small), "crc32c": crc32c(small)}, gzip.compress(small)))
    _, records = tail_raw(endpoint, stream)
    assert [data_of(r) for r in records] == [message, small]


def test_a_lost_chunk_is_reported_not_dropped(endpoint, kinesis, stream):
    message = b"x" * 1000
    parts = [message[:500], message[500:]]
    digest = hashlib.sha256(message).hexdigest()
    kinesis.put_record(StreamName=stream, PartitionKey="k", Data=envelope(
        {"t": "chunk", "id": "ff" * 16, "index": 0, "count": 2, "size": 1000, "sha256": digest,
         "crc32c": crc32c(parts[0])}, parts[0]))
    kinesis.put_record(StreamName=stream, PartitionKey="k", Data=b"plain")
    # A chunk whose checksum does not hold.
    kinesis.put_record(StreamName=stream, PartitionKey="k", Data=envelope(
        {"t": "chunk", "id": "ee" * 16, "index": 0, "count": 1, "size": 3, "sha256": "00", "crc32c": 1}, b"abc"))
    out, records = tail_raw(endpoint, stream, check=False)
    assert out.returncode == 1
    assert [data_of(r) for r in records] == [b"plain"]
    err = out.stderr.decode()
    assert "1 of 2 chunks" in err and "CRC-32C" in err
    # Data that only looks like an envelope is data.
    kinesis.put_record(StreamName=stream, PartitionKey="k", Data=MAGIC + b"\x00\x00\x00\x02{}")
    out, records = tail_raw(endpoint, stream, "--max-records", "2", check=False)
    assert data_of(records[-1]) == MAGIC + b"\x00\x00\x00\x02{}"
