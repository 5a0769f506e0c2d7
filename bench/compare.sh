#!/usr/bin/env bash
# Side-by-side comparison of Sluice with the Kinesis emulators it must beat:
# ferrokinesis (crates.io), kinesalite and kinesis-mock (npm: kinesis-local).
#
# Builds Sluice in release mode, installs the peers into a cache directory,
# starts each on a free loopback port, runs the same `sluice bench` workloads
# against each, samples each server's CPU time and RSS from /proc, and writes
# a table with the date and machine into docs/PERFORMANCE.md (between the
# compare markers). Raw JSON reports stay in $OUT.
#
#   bench/compare.sh                      # every peer, 10 s per workload
#   DURATION=3 PEERS="sluice kinesalite" bench/compare.sh
#   STORE_SECONDS=600 bench/compare.sh    # let workload 7 run longer
#   SWEEP_SHARDS="4 512" bench/compare.sh # workload 8's shard counts
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
CACHE=${CACHE:-$root/target/peers}
OUT=${OUT:-$root/target/compare}
DURATION=${DURATION:-10}
STORE_RECORDS=${STORE_RECORDS:-10000000}
STORE_SECONDS=${STORE_SECONDS:-180}
PEERS=${PEERS:-"sluice ferrokinesis kinesalite kinesis-mock"}
WRITE_DOC=${WRITE_DOC:-1}
SWEEP_SHARDS=${SWEEP_SHARDS:-"4 64 512 2048 10000"}
mkdir -p "$CACHE" "$OUT"
# Results of the peers run now are replaced; others' earlier results stay, so
# that one peer can be rerun (PEERS=kinesalite) without losing the rest.
for peer in $PEERS; do rm -f "$OUT/$peer".*.json "$OUT/$peer".*.err; done

echo "== building sluice (release)"
cargo build --release --locked -p sluice
sluice=$root/target/release/sluice

for peer in $PEERS; do
  case $peer in
    ferrokinesis)
      if [ ! -x "$CACHE/cargo/bin/ferrokinesis" ]; then
        echo "== installing ferrokinesis (crates.io)"
        cargo install --locked ferrokinesis --root "$CACHE/cargo"
      fi ;;
    kinesalite|kinesis-mock)
      if [ ! -d "$CACHE/npm/node_modules/kinesalite" ] || [ ! -d "$CACHE/npm/node_modules/kinesis-local" ]; then
        echo "== installing kinesalite and kinesis-local (npm)"
        mkdir -p "$CACHE/npm"
        (cd "$CACHE/npm" && npm install --no-audit --no-fund --loglevel=error kinesalite@3.3.3 kinesis-local@0.6.2)
      fi ;;
  esac
done

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts $1 on port $2; sets $server_pid.
start() {
  local peer=$1 port=$2 data
  data=$(mktemp -d)
  case $peer in
    sluice)
      # No peer enforces AWS's per-shard limits; neither does Sluice here.
      "$sluice" serve --listen "127.0.0.1:$port" --data-dir "$data/sluice" --limits off --shard-limit 20000 > "$OUT/$peer.log" 2>&1 &
      ;;
    ferrokinesis)
      "$CACHE/cargo/bin/ferrokinesis" --port "$port" --create-stream-ms 0 --delete-stream-ms 0 --shard-limit 20000 > "$OUT/$peer.log" 2>&1 &
      ;;
    kinesalite)
      node "$CACHE/npm/node_modules/kinesalite/cli.js" --port "$port" --createStreamMs 0 --deleteStreamMs 0 --shardLimit 1000 > "$OUT/$peer.log" 2>&1 &
      ;;
    kinesis-mock)
      (cd "$CACHE/npm/node_modules/kinesis-local" &&
        KINESIS_MOCK_PLAIN_PORT=$port KINESIS_MOCK_TLS_PORT=$(free_port) LOG_LEVEL=WARN \
        CREATE_STREAM_DURATION=0ms DELETE_STREAM_DURATION=0ms exec node main.js) > "$OUT/$peer.log" 2>&1 &
      ;;
  esac
  server_pid=$!
  for _ in $(seq 600); do
    if curl -s -o /dev/null -X POST "http://127.0.0.1:$port/" \
        -H 'X-Amz-Target: Kinesis_20131202.ListStreams' -H 'Content-Type: application/x-amz-json-1.1' \
        -H 'Authorization: AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/kinesis/aws4_request, SignedHeaders=host, Signature=00' \
        -H 'X-Amz-Date: 20260101T000000Z' -d '{}'; then
      return 0
    fi
    sleep 0.1
  done
  echo "$peer did not start; see $OUT/$peer.log" >&2
  return 1
}

# CPU seconds (user + system) and RSS (KiB) of a process.
cpu_seconds() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# Runs workload $2 against peer $1 on port $3: `sluice bench` with the rest.
workload() {
  local peer=$1 n=$2 port=$3
  shift 3
  local before after
  before=$(cpu_seconds "$server_pid")
  echo "-- $peer: workload $n: $*"
  rm -f "$OUT/$peer.$n.err"
  if ! "$sluice" bench --endpoint "http://127.0.0.1:$port" --json --no-progress "$@" > "$OUT/$peer.$n.json.tmp" 2> "$OUT/$peer.$n.err"; then
    cat "$OUT/$peer.$n.err" >&2
    echo "   failed" >&2
    rm -f "$OUT/$peer.$n.json.tmp"
    return 0
  fi
  after=$(cpu_seconds "$server_pid")
  python3 - "$OUT/$peer.$n.json.tmp" "$OUT/$peer.$n.json" "$before" "$after" "$(rss_kib "$server_pid")" <<'PY'
import json, sys
src, dst, before, after, rss = sys.argv[1:]
r = json.load(open(src))
r["server"] = {"cpu_s": float(after) - float(before), "rss_kib": int(rss)}
json.dump(r, open(dst, "w"), indent=1)
PY
  rm -f "$OUT/$peer.$n.json.tmp"
}

# The disk's raw sequential fdatasync bandwidth (1 MiB writes, each followed
# by fdatasync, for 3 s), on the file system the servers' data goes to: what
# a durable store can take at most.
echo "== raw fdatasync bandwidth"
python3 - "$(mktemp -d)" > "$OUT/disk.json" <<'PY'
import json, os, sys, time
path = os.path.join(sys.argv[1], "raw")
fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
block = os.urandom(1 << 20)
# Preallocated and synced first, as the journal's files are.
for _ in range(512):
    os.write(fd, block)
os.fsync(fd)
os.lseek(fd, 0, 0)
n, start = 0, time.monotonic()
while time.monotonic() - start < 3 and n < 512:
    os.write(fd, block)
    os.fdatasync(fd)
    n += 1
elapsed = time.monotonic() - start
os.close(fd)
os.unlink(path)
print(json.dumps({"mb_per_s": n * len(block) / elapsed / 1e6}))
PY
cat "$OUT/disk.json"

for peer in $PEERS; do
  port=$(free_port)
  echo "== $peer on port $port"
  start "$peer" "$port"
  workload "$peer" 1 "$port" --stream w1 --shards 4 --record-size 100 --batch 500 --concurrency 8 --duration "$DURATION" --delete
  workload "$peer" 2 "$port" --stream w2 --shards 4 --record-size 1024 --batch 500 --concurrency 4 --duration "$DURATION" --delete
  workload "$peer" 3 "$port" --stream w3 --shards 4 --producer put-record --record-size 1024 --concurrency 16 --duration "$DURATION" --delete
  workload "$peer" 4 "$port" --stream w4 --shards 1 --record-size 1024 --batch 500 --concurrency 4 --records 200000 --duration "$DURATION" --read-back --delete
  workload "$peer" 5 "$port" --stream w5 --shards 1 --producer put-record --record-size 100 --rate 200 --concurrency 2 \
    --consumer poll --poll-interval-ms 1 --duration "$DURATION" --delete
  workload "$peer" 6 "$port" --stream w6 --shards 1 --producer put-record --record-size 100 --rate 200 --concurrency 2 \
    --consumer subscribe --duration "$DURATION" --delete
  workload "$peer" 7 "$port" --stream w7 --shards 4 --record-size 100 --batch 500 --concurrency 8 \
    --records "$STORE_RECORDS" --duration "$STORE_SECONDS"
  for shards in $SWEEP_SHARDS; do
    workload "$peer" "8-$shards" "$port" --stream "w8-$shards" --shards "$shards" --record-size 100 --batch 500 \
      --keys 100000 --concurrency 8 --duration "$DURATION" --delete
  done
  workload "$peer" 9 "$port" --stream w9 --shards 512 --record-size 1024 --batch 500 --keys 100000 \
    --concurrency 8 --duration "$DURATION" --delete
  workload "$peer" 10 "$port" --stream w10 --shards 512 --record-size 100 --batch 100 --keys 100000 \
    --concurrency 8 --rate 20000 --duration "$DURATION" --delete
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
done

python3 - "$OUT" "$WRITE_DOC" "$DURATION" "$STORE_SECONDS" "$SWEEP_SHARDS" <<'PY'
import datetime, glob, json, os, platform, re, sys

out, write_doc, duration, store_seconds = sys.argv[1], sys.argv[2] == "1", sys.argv[3], sys.argv[4]
sweep = sys.argv[5].split()
# Every peer with results, in a fixed order.
peers = [p for p in ["sluice", "ferrokinesis", "kinesalite", "kinesis-mock"]
         if glob.glob(os.path.join(out, f"{p}.*.json"))]

def load(peer, n):
    try:
        return json.load(open(os.path.join(out, f"{peer}.{n}.json")))
    except FileNotFoundError:
        return None

def fmt_rate(x):
    return f"{x / 1e6:.2f} M" if x >= 1e6 else f"{x / 1e3:.1f} k" if x >= 1e3 else f"{x:.0f}"

def errors(r):
    n = sum(r["errors"].values())
    return f", {n} errors" if n else ""

def cpu(r):
    return f"; server CPU {r['server']['cpu_s']:.1f} s"

def cell(peer, n):
    r = load(peer, n)
    if r is None:
        try:
            err = open(os.path.join(out, f"{peer}.{n}.err")).read()
        except FileNotFoundError:
            err = ""
        m = re.search(r"(\w+): UnknownOperationException", err)
        return f"not supported ({m.group(1)}: UnknownOperationException)" if m else "failed"
    if n in (1, 3):
        return f"{fmt_rate(r['records_per_s'])} records/s{errors(r)}{cpu(r)}"
    if n == 2:
        return f"{r['payload_mb_per_s']:.0f} MB/s{errors(r)}{cpu(r)}"
    if n == 4:
        rb = r.get("read_back")
        if not rb:
            return "failed"
        return f"{rb['payload_mb_per_s']:.0f} MB/s ({fmt_rate(rb['records_per_s'])} records/s, {rb['records']} records)"
    if n in (5, 6):
        e = r.get("end_to_end_latency_ms")
        if not e:
            return "no records seen"
        return f"p50 {e['p50']:.2f} ms, p99 {e['p99']:.2f} ms"
    if n == 7:
        mib = r["server"]["rss_kib"] / 1024
        return f"{mib:.0f} MiB after {r['records_ok'] / 1e6:.2f} M records"
    if str(n).startswith("8-"):
        lat = r["put_latency_ms"]
        return f"{fmt_rate(r['records_per_s'])} records/s, put p50 {lat['p50']:.1f} ms{errors(r)}{cpu(r)}"
    if n == 9:
        return f"{r['payload_mb_per_s']:.0f} MB/s{errors(r)}{cpu(r)}"
    if n == 10:
        lat = r["put_latency_ms"]
        return f"{fmt_rate(r['records_per_s'])} records/s, put p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms{errors(r)}"
    return "?"

rows = [
    (1, "1. PutRecords 500 x 100 B, 4 shards"),
    (2, "2. PutRecords 500 x 1 KiB, 4 shards"),
    (3, "3. PutRecord 1 KiB, 16 connections"),
    (4, "4. Read one shard back from TRIM_HORIZON (200k x 1 KiB)"),
    (5, "5. Put -> visible, polling reader (1 ms), 200 records/s"),
    (6, "6. Put -> pushed, SubscribeToShard, 200 records/s"),
    (7, "7. Server RSS after storing 100 B records"),
] + [
    (f"8-{n}", f"8. PutRecords 500 x 100 B, 100k keys, {n} shards") for n in sweep
] + [
    (9, "9. PutRecords 500 x 1 KiB, 100k keys, 512 shards"),
    (10, "10. PutRecords 100 x 100 B at 20k records/s, 512 shards: put latency"),
]
cpu_model = "unknown CPU"
try:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
except OSError:
    pass
mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
try:
    disk = json.load(open(os.path.join(out, "disk.json")))
    disk_line = f"Raw sequential fdatasync bandwidth of the disk (1 MiB writes, fdatasync after each): {disk['mb_per_s']:.0f} MB/s."
except (OSError, ValueError, KeyError):
    disk_line = ""
machine = f"{os.cpu_count()} cores ({cpu_model}), {mem_gib:.0f} GiB, {platform.system()} {platform.release()}"
lines = [
    f"Measured {datetime.date.today().isoformat()} on {machine} by `bench/compare.sh`",
    f"({duration} s per workload; workload 7 stops at {store_seconds} s or 10 M records).",
    "Sluice acknowledges after fsync; the peers keep records in memory.",
    disk_line,
    "",
    "| workload | " + " | ".join(peers) + " |",
    "|---|" + "---|" * len(peers),
]
for n, name in rows:
    cells = [cell(p, n) for p in peers]
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
table = "\n".join(lines)
print(table)
if write_doc:
    path = "docs/PERFORMANCE.md"
    doc = open(path).read()
    begin, end = "<!-- compare:begin -->", "<!-- compare:end -->"
    if begin in doc and end in doc:
        doc = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: f"{begin}\n{table}\n{end}", doc, flags=re.S)
    else:
        doc += f"\n## Side by side with the peers\n\n{begin}\n{table}\n{end}\n"
    open(path, "w").write(doc)
    print(f"written to {path}")
PY
