// @aws-sdk/client-kinesis against a real `sluice serve` started on a free port.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import {
  KinesisClient,
  CreateStreamCommand,
  DeleteStreamCommand,
  DescribeStreamSummaryCommand,
  ListStreamsCommand,
  ListShardsCommand,
  PutRecordCommand,
  PutRecordsCommand,
  GetShardIteratorCommand,
  GetRecordsCommand,
  AddTagsToStreamCommand,
  ListTagsForStreamCommand,
  IncreaseStreamRetentionPeriodCommand,
  DescribeLimitsCommand,
  SplitShardCommand,
  MergeShardsCommand,
  RegisterStreamConsumerCommand,
  DescribeStreamConsumerCommand,
  ListStreamConsumersCommand,
  DeregisterStreamConsumerCommand,
  SubscribeToShardCommand,
  ResourceNotFoundException,
  ResourceInUseException,
  InvalidArgumentException,
} from "@aws-sdk/client-kinesis";

const binary = process.env.SLUICE_BIN ?? resolve(import.meta.dirname, "../../target/debug/sluice");
let server;
let dataDir;
let client;

before(async () => {
  dataDir = mkdtempSync(join(tmpdir(), "sluice-node-"));
  // AWS's per-shard limits are off for the shared server; the limits test starts its own.
  server = spawn(binary, ["serve", "--listen", "127.0.0.1:0", "--data-dir", dataDir, "--limits", "off"], { stdio: ["ignore", "pipe", "inherit"] });
  const line = await new Promise((ok, fail) => {
    createInterface({ input: server.stdout }).once("line", ok);
    server.once("exit", (code) => fail(new Error(`sluice exited with ${code}`)));
  });
  assert.match(line, /^sluice listening on /);
  client = new KinesisClient({
    endpoint: `http://${line.split(" ").pop()}`,
    region: "us-east-1",
    credentials: { accessKeyId: "AKIDEXAMPLE", secretAccessKey: "secret" },
    maxAttempts: 1,
  });
});

// Stops a server and waits for it to exit (a clean stop writes a checkpoint
// into its data directory: removing the directory before it exits races it).
async function stop(proc) {
  if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((resolve) => proc.once("exit", resolve));
  proc.kill("SIGTERM");
  await exited;
}

after(async () => {
  client?.destroy();
  await stop(server);
  rmSync(dataDir, { recursive: true, force: true });
});

const bytes = (s) => new TextEncoder().encode(s);
const text = (b) => new TextDecoder().decode(b);

async function readAll(StreamName, ShardId, position = { ShardIteratorType: "TRIM_HORIZON" }) {
  let { ShardIterator } = await client.send(new GetShardIteratorCommand({ StreamName, ShardId, ...position }));
  const out = [];
  for (;;) {
    const r = await client.send(new GetRecordsCommand({ ShardIterator, Limit: 1000 }));
    out.push(...r.Records);
    if (r.Records.length === 0) return out;
    ShardIterator = r.NextShardIterator;
  }
}

test("stream lifecycle and errors", async () => {
  await client.send(new CreateStreamCommand({ StreamName: "js-life", ShardCount: 2 }));
  const s = await client.send(new DescribeStreamSummaryCommand({ StreamName: "js-life" }));
  assert.equal(s.StreamDescriptionSummary.StreamStatus, "ACTIVE");
  assert.equal(s.StreamDescriptionSummary.OpenShardCount, 2);
  assert.ok(s.StreamDescriptionSummary.StreamCreationTimestamp instanceof Date);
  assert.ok((await client.send(new ListStreamsCommand({}))).StreamNames.includes("js-life"));
  await assert.rejects(client.send(new CreateStreamCommand({ StreamName: "js-life", ShardCount: 1 })), (e) => {
    assert.ok(e instanceof ResourceInUseException);
    assert.equal(e.message, "Stream js-life under account 000000000000 already exists.");
    return true;
  });
  await client.send(new DeleteStreamCommand({ StreamName: "js-life" }));
  await assert.rejects(client.send(new DescribeStreamSummaryCommand({ StreamName: "js-life" })), (e) => {
    assert.ok(e instanceof ResourceNotFoundException);
    assert.equal(e.message, "Stream js-life under account 000000000000 not found.");
    return true;
  });
});

test("put and read back, every iterator type", async () => {
  await client.send(new CreateStreamCommand({ StreamName: "js-rec", ShardCount: 1 }));
  const seqs = [];
  for (const d of ["a", "b", "c"]) {
    const r = await client.send(new PutRecordCommand({ StreamName: "js-rec", PartitionKey: "k", Data: bytes(d) }));
    assert.equal(r.ShardId, "shardId-000000000000");
    assert.equal(r.SequenceNumber.length, 56);
    seqs.push(r.SequenceNumber);
  }
  const shard = "shardId-000000000000";
  const data = (recs) => recs.map((r) => text(r.Data));
  assert.deepEqual(data(await readAll("js-rec", shard)), ["a", "b", "c"]);
  assert.deepEqual(data(await readAll("js-rec", shard, { ShardIteratorType: "AT_SEQUENCE_NUMBER", StartingSequenceNumber: seqs[1] })), ["b", "c"]);
  assert.deepEqual(data(await readAll("js-rec", shard, { ShardIteratorType: "AFTER_SEQUENCE_NUMBER", StartingSequenceNumber: seqs[1] })), ["c"]);
  assert.deepEqual(data(await readAll("js-rec", shard, { ShardIteratorType: "AT_TIMESTAMP", Timestamp: new Date(0) })), ["a", "b", "c"]);
  assert.deepEqual(data(await readAll("js-rec", shard, { ShardIteratorType: "LATEST" })), []);
  const records = await readAll("js-rec", shard);
  assert.equal(records[0].PartitionKey, "k");
  assert.ok(records[0].ApproximateArrivalTimestamp instanceof Date);
  await assert.rejects(
    client.send(new GetShardIteratorCommand({ StreamName: "js-rec", ShardId: shard, ShardIteratorType: "AT_SEQUENCE_NUMBER", StartingSequenceNumber: "1" })),
    (e) => e instanceof InvalidArgumentException,
  );
  await client.send(new DeleteStreamCommand({ StreamName: "js-rec" }));
});

test("PutRecords reports every entry in order", async () => {
  await client.send(new CreateStreamCommand({ StreamName: "js-batch", ShardCount: 3 }));
  const Records = Array.from({ length: 300 }, (_, i) => ({ PartitionKey: `p${i}`, Data: bytes(`r${i}`) }));
  const r = await client.send(new PutRecordsCommand({ StreamName: "js-batch", Records }));
  assert.equal(r.FailedRecordCount, 0);
  assert.equal(r.Records.length, 300);
  const listed = await client.send(new ListShardsCommand({ StreamName: "js-batch", MaxResults: 2 }));
  assert.equal(listed.Shards.length, 2);
  const rest = await client.send(new ListShardsCommand({ NextToken: listed.NextToken }));
  const shards = [...listed.Shards, ...rest.Shards].map((s) => s.ShardId);
  assert.deepEqual(shards, ["shardId-000000000000", "shardId-000000000001", "shardId-000000000002"]);
  let total = 0;
  for (const shard of shards) {
    const got = await readAll("js-batch", shard);
    const expected = r.Records.map((x, i) => [x, i]).filter(([x]) => x.ShardId === shard).map(([x, i]) => [x.SequenceNumber, `r${i}`]);
    assert.deepEqual(got.map((g) => [g.SequenceNumber, text(g.Data)]), expected);
    total += got.length;
  }
  assert.equal(total, 300);
  await client.send(new DeleteStreamCommand({ StreamName: "js-batch" }));
});

test("tags, retention and limits", async () => {
  await client.send(new CreateStreamCommand({ StreamName: "js-set", ShardCount: 1 }));
  await client.send(new AddTagsToStreamCommand({ StreamName: "js-set", Tags: { b: "2", a: "1" } }));
  const tags = await client.send(new ListTagsForStreamCommand({ StreamName: "js-set" }));
  assert.deepEqual(tags.Tags, [{ Key: "a", Value: "1" }, { Key: "b", Value: "2" }]);
  await assert.rejects(
    client.send(new IncreaseStreamRetentionPeriodCommand({ StreamName: "js-set", RetentionPeriodHours: 10000 })),
    (e) => e instanceof InvalidArgumentException && e.message === "Maximum allowed retention period is 8760 hours. Requested retention period (10000 hours) is too long.",
  );
  const limits = await client.send(new DescribeLimitsCommand({}));
  assert.equal(limits.ShardLimit, 500);
  await client.send(new DeleteStreamCommand({ StreamName: "js-set" }));
});

test("validation errors keep AWS's wording", async () => {
  await assert.rejects(client.send(new CreateStreamCommand({ StreamName: "bad name", ShardCount: 1 })), (e) => {
    assert.equal(e.name, "ValidationException");
    assert.equal(e.message, "1 validation error detected: Value 'bad name' at 'streamName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+");
    return true;
  });
});

test("signatures are verified when credentials are configured", async () => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-node-signed-"));
  const secured = spawn(binary, ["serve", "--listen", "127.0.0.1:0", "--data-dir", dir, "--credentials", "AKIDGOOD:good-secret"], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  try {
    const line = await new Promise((ok) => createInterface({ input: secured.stdout }).once("line", ok));
    const endpoint = `http://${line.split(" ").pop()}`;
    const make = (accessKeyId, secretAccessKey) =>
      new KinesisClient({ endpoint, region: "us-east-1", credentials: { accessKeyId, secretAccessKey }, maxAttempts: 1 });
    const good = make("AKIDGOOD", "good-secret");
    await good.send(new CreateStreamCommand({ StreamName: "signed", ShardCount: 1 }));
    await good.send(new PutRecordCommand({ StreamName: "signed", PartitionKey: "k", Data: bytes("x") }));
    await assert.rejects(make("AKIDGOOD", "wrong").send(new ListStreamsCommand({})), (e) => e.name === "InvalidSignatureException");
    await assert.rejects(make("AKIDNOPE", "good-secret").send(new ListStreamsCommand({})), (e) => e.name === "UnrecognizedClientException");
    good.destroy();
  } finally {
    await stop(secured);
    rmSync(dir, { recursive: true, force: true });
  }
});

test("split and merge while a producer writes; every record once, in order per key", async () => {
  const StreamName = "js-reshard";
  await client.send(new CreateStreamCommand({ StreamName, ShardCount: 2 }));
  const keys = Array.from({ length: 8 }, (_, i) => `k${i}`);
  let batches = 0;
  const producer = (async () => {
    for (let n = 0; n < 60; n++) {
      const out = await client.send(new PutRecordsCommand({
        StreamName,
        Records: keys.map((k) => ({ PartitionKey: k, Data: bytes(`${k}:${n}`) })),
      }));
      assert.equal(out.FailedRecordCount, 0);
      batches++;
    }
  })();
  // Reshard while the producer is between its first and last batches.
  while (batches < 10) await new Promise((ok) => setImmediate(ok));
  await client.send(new SplitShardCommand({ StreamName, ShardToSplit: "shardId-000000000001", NewStartingHashKey: (2n ** 127n + 2n ** 126n).toString() }));
  while (batches < 30) await new Promise((ok) => setImmediate(ok));
  await client.send(new MergeShardsCommand({ StreamName, ShardToMerge: "shardId-000000000000", AdjacentShardToMerge: "shardId-000000000002" }));
  await producer;

  const { Shards } = await client.send(new ListShardsCommand({ StreamName }));
  assert.deepEqual(Shards.map((s) => s.ShardId), [0, 1, 2, 3, 4].map((i) => `shardId-00000000000${i}`));
  const byId = Object.fromEntries(Shards.map((s) => [s.ShardId, s]));
  assert.equal(byId["shardId-000000000004"].ParentShardId, "shardId-000000000000");
  assert.equal(byId["shardId-000000000004"].AdjacentParentShardId, "shardId-000000000002");
  // Parents before children.
  const seen = [];
  for (const id of ["shardId-000000000000", "shardId-000000000001", "shardId-000000000002", "shardId-000000000003", "shardId-000000000004"]) {
    let { ShardIterator } = await client.send(new GetShardIteratorCommand({ StreamName, ShardId: id, ShardIteratorType: "TRIM_HORIZON" }));
    for (;;) {
      const out = await client.send(new GetRecordsCommand({ ShardIterator }));
      seen.push(...out.Records.map((r) => text(r.Data)));
      if (!out.NextShardIterator) {
        assert.ok(out.ChildShards.length > 0, `${id} closed: its children are named`);
        break;
      }
      if (out.Records.length === 0 && out.MillisBehindLatest === 0) break;
      ShardIterator = out.NextShardIterator;
    }
  }
  assert.equal(seen.length, 60 * keys.length);
  for (const k of keys) {
    const ns = seen.filter((s) => s.startsWith(`${k}:`)).map((s) => Number(s.split(":")[1]));
    assert.deepEqual(ns, Array.from({ length: 60 }, (_, n) => n), `order of ${k}`);
  }
  await client.send(new DeleteStreamCommand({ StreamName }));
});

test("enhanced fan-out over HTTP/2: backlog, live records, a split, the 5 s rule", async () => {
  const StreamName = "js-fanout";
  await client.send(new CreateStreamCommand({ StreamName, ShardCount: 1 }));
  const { StreamDescriptionSummary } = await client.send(new DescribeStreamSummaryCommand({ StreamName }));
  const StreamARN = StreamDescriptionSummary.StreamARN;
  const { Consumer } = await client.send(new RegisterStreamConsumerCommand({ StreamARN, ConsumerName: "js" }));
  assert.equal(Consumer.ConsumerStatus, "ACTIVE");
  assert.ok(Consumer.ConsumerCreationTimestamp instanceof Date);
  const described = await client.send(new DescribeStreamConsumerCommand({ ConsumerARN: Consumer.ConsumerARN }));
  assert.equal(described.ConsumerDescription.StreamARN, StreamARN);
  const listed = await client.send(new ListStreamConsumersCommand({ StreamARN }));
  assert.deepEqual(listed.Consumers.map((c) => c.ConsumerARN), [Consumer.ConsumerARN]);

  const put = (data) => client.send(new PutRecordCommand({ StreamName, PartitionKey: "k", ExplicitHashKey: "0", Data: bytes(data) }));
  await put("backlog-0");
  await put("backlog-1");
  const subscribe = (ShardId, StartingPosition) =>
    client.send(new SubscribeToShardCommand({ ConsumerARN: Consumer.ConsumerARN, ShardId, StartingPosition }));
  const out = await subscribe("shardId-000000000000", { Type: "TRIM_HORIZON" });
  // A second call within 5 s is refused.
  await assert.rejects(subscribe("shardId-000000000000", { Type: "LATEST" }), (e) =>
    e instanceof ResourceInUseException && e.message.startsWith("Another active subscription exists for this consumer"));

  const seen = [];
  let end;
  let livePut = false;
  for await (const event of out.EventStream) {
    const e = event.SubscribeToShardEvent;
    assert.ok(e, `an event: ${JSON.stringify(Object.keys(event))}`);
    seen.push(...e.Records.map((r) => text(r.Data)));
    if (seen.length === 2 && !livePut) {
      livePut = true;
      await put("live");
    }
    if (seen.length === 3 && !end) {
      end = true;
      await client.send(new SplitShardCommand({ StreamName, ShardToSplit: "shardId-000000000000", NewStartingHashKey: (2n ** 127n).toString() }));
    }
    if (e.ChildShards?.length) {
      assert.equal(e.ContinuationSequenceNumber, undefined);
      assert.deepEqual(e.ChildShards.map((c) => c.ShardId).sort(), ["shardId-000000000001", "shardId-000000000002"]);
      end = "children";
    }
  }
  assert.equal(end, "children", "the stream ended after ChildShards");
  assert.deepEqual(seen, ["backlog-0", "backlog-1", "live"]);

  // The consumer moves on to the child holding hash key 0.
  await put("child");
  const child = await subscribe("shardId-000000000001", { Type: "TRIM_HORIZON" });
  for await (const event of child.EventStream) {
    const records = event.SubscribeToShardEvent.Records;
    if (records.length) {
      assert.deepEqual(records.map((r) => text(r.Data)), ["child"]);
      break;
    }
  }
  await client.send(new DeregisterStreamConsumerCommand({ ConsumerARN: Consumer.ConsumerARN }));
  await assert.rejects(client.send(new DescribeStreamConsumerCommand({ ConsumerARN: Consumer.ConsumerARN })), ResourceNotFoundException);
  await client.send(new DeleteStreamCommand({ StreamName }));
});

test("AWS's per-shard limits: throttled entries, and the SDK's retries recover", async () => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-node-limits-"));
  // The default limits profile (`aws`).
  const limited = spawn(binary, ["serve", "--listen", "127.0.0.1:0", "--data-dir", dir], { stdio: ["ignore", "pipe", "inherit"] });
  try {
    const line = await new Promise((ok) => createInterface({ input: limited.stdout }).once("line", ok));
    const endpoint = `http://${line.split(" ").pop()}`;
    const make = (maxAttempts) =>
      new KinesisClient({ endpoint, region: "us-east-1", credentials: { accessKeyId: "a", secretAccessKey: "b" }, maxAttempts });
    const once = make(1);
    const StreamName = "js-limits";
    await once.send(new CreateStreamCommand({ StreamName, ShardCount: 1 }));
    // 300 x 4 KiB in one request: what fits in the shard's 1 MiB goes.
    const out = await once.send(new PutRecordsCommand({
      StreamName,
      Records: Array.from({ length: 300 }, () => ({ PartitionKey: "k", Data: new Uint8Array(4096) })),
    }));
    assert.equal(out.FailedRecordCount, 300 - Math.floor(2 ** 20 / 4097));
    const failed = out.Records.filter((r) => r.ErrorCode);
    assert.ok(failed.every((r) => r.ErrorCode === "ProvisionedThroughputExceededException"));
    assert.equal(failed[0].ErrorMessage, `Rate exceeded for shard shardId-000000000000 in stream ${StreamName} under account 000000000000.`);
    const big = () => new PutRecordCommand({ StreamName, PartitionKey: "k", Data: new Uint8Array(900 * 1024) });
    await assert.rejects(once.send(big()), (e) => e.name === "ProvisionedThroughputExceededException");
    // The SDK treats it as throttling and backs off until the shard's second refills.
    const retrying = make(10);
    const put = await retrying.send(big());
    assert.equal(put.ShardId, "shardId-000000000000");
    assert.ok(put.$metadata.attempts > 1, `retried: ${put.$metadata.attempts} attempts`);
    // Control-plane calls: DescribeStreamSummary is 20 a second per account.
    const outcomes = [];
    for (let i = 0; i < 30; i++) {
      outcomes.push(await once.send(new DescribeStreamSummaryCommand({ StreamName })).then(() => "ok", (e) => e.name));
    }
    assert.ok(outcomes.includes("LimitExceededException"), outcomes.join(","));
    assert.ok(outcomes.every((o) => o === "ok" || o === "LimitExceededException"));
    const summary = await retrying.send(new DescribeStreamSummaryCommand({ StreamName }));
    assert.equal(summary.StreamDescriptionSummary.StreamName, StreamName);
    once.destroy();
    retrying.destroy();
  } finally {
    await stop(limited);
    rmSync(dir, { recursive: true, force: true });
  }
});
