#!/usr/bin/env bash
# The README's AWS CLI quick start, run as written against a real `sluice serve`.
# Usage: tests/cli-quickstart.sh SLUICE_BINARY AWS_CLI
set -euo pipefail
sluice=$1
aws_cli=$2
data_dir=$(mktemp -d)
out=$(mktemp)
"$sluice" serve --listen 127.0.0.1:0 --data-dir "$data_dir" > "$out" &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$data_dir" "$out"' EXIT
for _ in $(seq 1 100); do
  grep -q "listening on" "$out" && break
  sleep 0.1
done
addr=$(grep -o '127.0.0.1:[0-9]*' "$out")
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1
aws() { "$aws_cli" --endpoint-url "http://$addr" "$@"; }

# --- the quick start, as in the README ---
aws kinesis create-stream --stream-name Foo --shard-count 1
aws kinesis describe-stream-summary --stream-name Foo
aws kinesis list-streams
aws kinesis put-record --stream-name Foo --partition-key 123 --data testdata
SHARD_ITERATOR=$(aws kinesis get-shard-iterator --shard-id shardId-000000000000 \
  --shard-iterator-type TRIM_HORIZON --stream-name Foo --query 'ShardIterator' --output text)
aws kinesis get-records --shard-iterator "$SHARD_ITERATOR"
aws kinesis delete-stream --stream-name Foo
# --- end of the quick start ---

# And check what it printed, not only that it ran.
aws kinesis create-stream --stream-name Bar --shard-count 1
[ "$(aws kinesis describe-stream-summary --stream-name Bar --query StreamDescriptionSummary.StreamStatus --output text)" = ACTIVE ]
aws kinesis put-record --stream-name Bar --partition-key 123 --data testdata > /dev/null
it=$(aws kinesis get-shard-iterator --shard-id shardId-000000000000 --shard-iterator-type TRIM_HORIZON --stream-name Bar --query ShardIterator --output text)
[ "$(aws kinesis get-records --shard-iterator "$it" --query 'length(Records)' --output text)" = 1 ]
aws kinesis delete-stream --stream-name Bar
[ "$(aws kinesis list-streams --query 'length(StreamNames)' --output text)" = 0 ]

# --- the Firehose quick start, as in the README (the bucket directory is
# under this run's data directory instead of ./sluice-data) ---
aws firehose create-delivery-stream --delivery-stream-name logs \
  --extended-s3-destination-configuration \
  'RoleARN=arn:aws:iam::000000000000:role/firehose,BucketARN=arn:aws:s3:::logs,Prefix=app/,BufferingHints={SizeInMBs=1,IntervalInSeconds=0}'
aws firehose put-record --delivery-stream-name logs --record Data=hello
aws firehose put-record-batch --delivery-stream-name logs --records '[{"Data":"one"},{"Data":"two"}]'
aws firehose describe-delivery-stream --delivery-stream-name logs
find "$data_dir/s3/logs" -type f || true
# --- end of the Firehose quick start ---

# Delivery runs beside the answers: wait (at most 10 s) for the three
# records, then check what the objects hold and how they are named.
for _ in $(seq 1 100); do
  [ "$(find "$data_dir/s3/logs" -type f -exec cat {} + 2>/dev/null | wc -c)" = 11 ] && break
  sleep 0.1
done
all=$(find "$data_dir/s3/logs" -type f -exec cat {} +)
[ "${#all}" = 11 ]
case "$all" in *hello*) ;; *) echo "hello not delivered: $all"; exit 1 ;; esac
find "$data_dir/s3/logs" -type f | grep -Eq '/s3/logs/app/[0-9]{4}/[0-9]{2}/[0-9]{2}/[0-9]{2}/logs-1-[0-9]{4}(-[0-9]{2}){5}-[0-9a-f-]{36}$'
aws firehose delete-delivery-stream --delivery-stream-name logs
[ "$(aws firehose list-delivery-streams --query 'length(DeliveryStreamNames)' --output text)" = 0 ]
echo "quickstart: 2 passed, 0 failed"
