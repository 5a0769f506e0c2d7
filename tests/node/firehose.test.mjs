// @aws-sdk/client-firehose against a real `sluice serve` (issue #16): the
// control plane, and Direct PUT records delivered into a directory bucket
// when the frozen virtual clock passes the buffer interval.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import {
  FirehoseClient,
  CreateDeliveryStreamCommand,
  DescribeDeliveryStreamCommand,
  ListDeliveryStreamsCommand,
  UpdateDestinationCommand,
  TagDeliveryStreamCommand,
  ListTagsForDeliveryStreamCommand,
  PutRecordCommand,
  PutRecordBatchCommand,
  DeleteDeliveryStreamCommand,
  ResourceNotFoundException,
  ConcurrentModificationException,
} from "@aws-sdk/client-firehose";

const binary = process.env.SLUICE_BIN ?? resolve(import.meta.dirname, "../../target/debug/sluice");
let server;
let dataDir;
let client;
let endpoint;

async function control(path, body) {
  const res = await fetch(`${endpoint}/_sluice/${path}`, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  assert.equal(res.status, 200);
  return res.json();
}

before(async () => {
  dataDir = mkdtempSync(join(tmpdir(), "sluice-node-firehose-"));
  server = spawn(binary, ["serve", "--listen", "127.0.0.1:0", "--data-dir", dataDir, "--test-controls"], { stdio: ["ignore", "pipe", "inherit"] });
  const line = await new Promise((ok, fail) => {
    createInterface({ input: server.stdout }).once("line", ok);
    server.once("exit", (code) => fail(new Error(`sluice exited with ${code}`)));
  });
  assert.match(line, /^sluice listening on /);
  endpoint = `http://${line.split(" ").pop()}`;
  client = new FirehoseClient({
    endpoint,
    region: "eu-west-1",
    credentials: { accessKeyId: "AKIDEXAMPLE", secretAccessKey: "secret" },
    maxAttempts: 1,
  });
});

after(async () => {
  client?.destroy();
  const exited = new Promise((ok) => server.once("exit", ok));
  server.kill("SIGTERM");
  await exited;
  rmSync(dataDir, { recursive: true, force: true });
});

test("delivery streams: create, describe, update with the version, tag, delete", async () => {
  const s3 = { RoleARN: "arn:aws:iam::000000000000:role/r", BucketARN: "arn:aws:s3:::b" };
  const created = await client.send(new CreateDeliveryStreamCommand({
    DeliveryStreamName: "node",
    ExtendedS3DestinationConfiguration: { ...s3, Prefix: "p/" },
  }));
  assert.equal(created.DeliveryStreamARN, "arn:aws:firehose:eu-west-1:000000000000:deliverystream/node");
  const { DeliveryStreamDescription: d } = await client.send(new DescribeDeliveryStreamCommand({ DeliveryStreamName: "node" }));
  assert.equal(d.VersionId, "1");
  assert.ok(d.CreateTimestamp instanceof Date && d.CreateTimestamp.getFullYear() >= 2024);
  assert.deepEqual(d.Destinations[0].ExtendedS3DestinationDescription.BufferingHints, { SizeInMBs: 5, IntervalInSeconds: 300 });
  const listed = await client.send(new ListDeliveryStreamsCommand({}));
  assert.deepEqual(listed.DeliveryStreamNames, ["node"]);
  await client.send(new UpdateDestinationCommand({
    DeliveryStreamName: "node", CurrentDeliveryStreamVersionId: "1", DestinationId: "destinationId-000000000001",
    ExtendedS3DestinationUpdate: { Prefix: "q/" },
  }));
  await assert.rejects(client.send(new UpdateDestinationCommand({
    DeliveryStreamName: "node", CurrentDeliveryStreamVersionId: "1", DestinationId: "destinationId-000000000001",
    ExtendedS3DestinationUpdate: { Prefix: "r/" },
  })), ConcurrentModificationException);
  await client.send(new TagDeliveryStreamCommand({ DeliveryStreamName: "node", Tags: [{ Key: "k", Value: "v" }] }));
  const tags = await client.send(new ListTagsForDeliveryStreamCommand({ DeliveryStreamName: "node" }));
  assert.deepEqual(tags.Tags, [{ Key: "k", Value: "v" }]);
  await client.send(new DeleteDeliveryStreamCommand({ DeliveryStreamName: "node" }));
  await assert.rejects(client.send(new DescribeDeliveryStreamCommand({ DeliveryStreamName: "node" })), ResourceNotFoundException);
});

test("records put are delivered as one object when the interval passes", async () => {
  await control("clock", { freeze: true });
  await client.send(new CreateDeliveryStreamCommand({
    DeliveryStreamName: "deliver",
    S3DestinationConfiguration: {
      RoleARN: "arn:aws:iam::000000000000:role/r", BucketARN: "arn:aws:s3:::node-bucket", Prefix: "in/",
      BufferingHints: { SizeInMBs: 1, IntervalInSeconds: 30 },
    },
  }));
  const one = await client.send(new PutRecordCommand({ DeliveryStreamName: "deliver", Record: { Data: Buffer.from("a,1\n") } }));
  assert.ok(one.RecordId);
  assert.equal(one.Encrypted, false);
  const batch = await client.send(new PutRecordBatchCommand({
    DeliveryStreamName: "deliver", Records: [{ Data: Buffer.from("b,2\n") }, { Data: Buffer.from("c,3\n") }],
  }));
  assert.equal(batch.FailedPutCount, 0);
  assert.equal(batch.RequestResponses.length, 2);
  const bucket = join(dataDir, "s3", "node-bucket");
  const files = () => { try { return readdirSync(bucket, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()); } catch { return []; } };
  await control("clock", { advanceMs: 29_000 });
  assert.equal(files().length, 0);
  await control("clock", { advanceMs: 1_000 });
  const [object] = files();
  assert.match(object.name, /^deliver-1-\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}-[0-9a-f-]{36}$/);
  assert.equal(readFileSync(join(object.parentPath, object.name), "utf8"), "a,1\nb,2\nc,3\n");
  await assert.rejects(client.send(new PutRecordCommand({ DeliveryStreamName: "missing", Record: { Data: Buffer.from("x") } })),
    ResourceNotFoundException);
  await client.send(new DeleteDeliveryStreamCommand({ DeliveryStreamName: "deliver" }));
});
