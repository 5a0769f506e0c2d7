"""Measures the client tools against a release `sluice serve` (limits off):
the producer (`sluice put`), a gibibyte through each large-record mode (put,
then `sluice tail` making it whole), and `sluice agent` (lines per second,
and the time from a line written to it being readable).

    target/pyenv/bin/python bench/client.py target/release/sluice

Prints a Markdown table for docs/PERFORMANCE.md.
"""
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

BIN = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "target/release/sluice")


def run(args, **kw):
    """Runs a command; (seconds, CPU seconds of the child, result)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    out = subprocess.run(args, **kw)
    took = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert out.returncode == 0, out.stderr
    return took, cpu, out


def main():
    work = tempfile.mkdtemp(prefix="sluice-client-bench-")
    server = subprocess.Popen([BIN, "serve", "--listen", "127.0.0.1:0", "--data-dir", f"{work}/data", "--limits", "off"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    endpoint = "http://" + server.stdout.readline().split()[-1]
    env = dict(os.environ, AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
               AWS_REGION="us-east-1", XDG_DATA_HOME=f"{work}/xdg")
    import boto3
    kinesis = boto3.client("kinesis", endpoint_url=endpoint, region_name="us-east-1",
                           aws_access_key_id="bench", aws_secret_access_key="bench")
    rows = []
    try:
        # The producer: a million 100-byte lines.
        lines = f"{work}/lines.txt"
        with open(lines, "w") as f:
            for i in range(1_000_000):
                f.write(f"{i:012d} " + "x" * 87 + "\n")
        for name, extra, shards in [
            ("random keys", [], 4),
            ("one key, aggregated", ["--partition-key", "k", "--aggregate"], 4),
        ]:
            stream = "p-" + name.replace(" ", "-").replace(",", "")
            kinesis.create_stream(StreamName=stream, ShardCount=shards)
            took, cpu, _ = run([BIN, "put", "--stream", stream, "--file", lines, "--lines", *extra],
                               env=env, capture_output=True)
            rows.append((f"put, 1,000,000 x 100 B lines, {name}",
                         f"{1e6 / took:,.0f} records/s ({100 / took:.1f} MB/s), {cpu:.2f} µs CPU/record"))
        # A gibibyte in 4 MiB records through each large-record mode.
        big = f"{work}/big.txt"
        import base64
        with open(big, "w") as f:
            for i in range(256):
                # Base64 of random bytes: zstd gets it to about 3/4.
                f.write(base64.b64encode(os.urandom(3 << 20)).decode() + "\n")
        size = os.path.getsize(big)
        for mode in ["auto", "compress", "chunk", "claim-check"]:
            stream = f"large-{mode}"
            kinesis.create_stream(StreamName=stream, ShardCount=4)
            store = ["--large-store", f"{work}/objects"]
            took, _, _ = run([BIN, "put", "--stream", stream, "--file", big, "--lines", "--large-records", mode,
                              "--codec", "lz4", *store], env=env, capture_output=True)
            t2, _, out = run([BIN, "tail", "--stream", stream, *store], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
            assert len(out.stdout) == size, (len(out.stdout), size)
            rows.append((f"1 GiB as 256 x 4 MiB records, --large-records {mode}",
                         f"put {size / took / 1e6:.0f} MB/s, tail (made whole) {size / t2 / 1e6:.0f} MB/s"))
        # The agent: a file of a million lines, START_OF_FILE.
        kinesis.create_stream(StreamName="agent", ShardCount=4)
        log = f"{work}/agent.log"
        os.rename(lines, log)
        config = f"{work}/agent.json"
        with open(config, "w") as f:
            json.dump({"kinesis.endpoint": endpoint, "flows": [{
                "filePattern": log, "kinesisStream": "agent", "initialPosition": "START_OF_FILE",
                "maxBufferAgeMillis": 1000}]}, f)
        checkpoints = f"{work}/cp.json"
        start = time.monotonic()
        agent = subprocess.Popen([BIN, "agent", "--config", config, "--checkpoints", checkpoints,
                                  "--progress-seconds", "0"], env=env, stderr=subprocess.DEVNULL)
        total = os.path.getsize(log)

        def acknowledged():
            try:
                with open(checkpoints) as f:
                    return sum(e["offset"] for v in json.load(f)["flows"].values() for e in v)
            except (OSError, ValueError, KeyError):
                return 0

        while acknowledged() < total:
            time.sleep(0.05)
        took = time.monotonic() - start
        rows.append(("agent, 1,000,000 x 100 B lines, START_OF_FILE", f"{1e6 / took:,.0f} lines/s"))
        # Tail latency: a line appended, until `sluice tail --follow` prints it.
        waits = []
        for i in range(5):
            reader = subprocess.Popen([BIN, "tail", "--stream", "agent", "--from", "latest", "--follow",
                                       "--max-records", "1"], env=env, stdout=subprocess.PIPE)
            time.sleep(1.0)  # its LATEST iterators are taken
            t0 = time.monotonic()
            with open(log, "a") as f:
                f.write(f"latency probe {i}\n")
            reader.communicate(timeout=60)
            waits.append(time.monotonic() - t0)
        waits.sort()
        rows.append(("agent, line written -> readable (maxBufferAgeMillis 1000)",
                     f"median {waits[2]:.2f} s, max {waits[-1]:.2f} s"))
        agent.terminate()
        agent.wait()
    finally:
        server.terminate()
        server.wait()
    print("| What | Result |")
    print("|---|---|")
    for what, result in rows:
        print(f"| {what} | {result} |")


if __name__ == "__main__":
    main()
