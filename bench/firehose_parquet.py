"""Firehose delivery throughput with and without Parquet conversion
(docs/PERFORMANCE.md): puts 60,000 JSON records into a delivery stream on
the frozen clock, then times the clock call that delivers them. Needs a
release build (`cargo build --release`) and boto3 (target/pyenv after
./scripts/test): `target/pyenv/bin/python bench/firehose_parquet.py`."""
import json, subprocess, sys, tempfile, time, urllib.request, concurrent.futures as cf, os, pathlib
import boto3
from botocore.config import Config
BIN = os.environ.get("SLUICE_BIN", str(pathlib.Path(__file__).resolve().parents[1] / "target" / "release" / "sluice"))
def control(ep, body):
    req = urllib.request.Request(ep + "/_sluice/clock", json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(req, timeout=600).read())
for compression in ["SNAPPY", "UNCOMPRESSED", None]:
    with tempfile.TemporaryDirectory() as d:
        p = subprocess.Popen([BIN, "serve", "--listen", "127.0.0.1:0", "--data-dir", d, "--limits", "off", "--test-controls",
                              "--firehose-table", "db.t=id bigint, name string, score double, at timestamp, tags array<string>, attrs map<string,int>"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        ep = "http://" + p.stdout.readline().split()[-1]
        control(ep, {"freeze": True})
        f = boto3.client("firehose", endpoint_url=ep, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x", config=Config(retries={"max_attempts": 1}))
        conf = dict(RoleARN="arn:aws:iam::000000000000:role/r", BucketARN="arn:aws:s3:::perf", BufferingHints={"SizeInMBs": 128, "IntervalInSeconds": 900})
        if compression:
            conf["DataFormatConversionConfiguration"] = {
                "SchemaConfiguration": {"DatabaseName": "db", "TableName": "t", "RoleARN": "arn:aws:iam::000000000000:role/r"},
                "InputFormatConfiguration": {"Deserializer": {"OpenXJsonSerDe": {}}},
                "OutputFormatConfiguration": {"Serializer": {"ParquetSerDe": {"Compression": compression}}}}
        f.create_delivery_stream(DeliveryStreamName="perf", ExtendedS3DestinationConfiguration=conf)
        rec = lambda i: json.dumps({"id": i, "name": f"user-{i % 1000}", "score": i * 0.5, "at": "2024-01-01T00:00:00Z",
                                    "tags": ["a", "b", str(i % 7)], "attrs": {"x": i % 100, "y": 2}, "pad": "p" * 700}).encode()
        batches = [[{"Data": rec(b * 500 + i)} for i in range(500)] for b in range(120)]
        total = sum(len(r["Data"]) for b in batches for r in b)
        def put(b):
            c = boto3.client("firehose", endpoint_url=ep, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
            assert c.put_record_batch(DeliveryStreamName="perf", Records=b)["FailedPutCount"] == 0
        with cf.ThreadPoolExecutor(4) as ex:
            list(ex.map(put, batches))
        t = time.monotonic()
        control(ep, {"advanceMs": 900_000})
        dt = time.monotonic() - t
        out = sum(x.stat().st_size for x in pathlib.Path(d, "s3", "perf").rglob("*") if x.is_file())
        print(f"{compression or 'none (JSON as is)'}: {len(batches)*500} records, {total/1e6:.1f} MB in, delivered in {dt:.2f} s = {total/1e6/dt:.1f} MB/s, {out/1e6:.1f} MB out", flush=True)
        p.terminate(); p.wait()
