// @aws-sdk/client-firehose against a real `sluice serve` (issue #16, first
// part: the control plane; PutRecord refuses until delivery is built).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
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
  DeleteDeliveryStreamCommand,
  ResourceNotFoundException,
  ConcurrentModificationException,
  InvalidArgumentException,
} from "@aws-sdk/client-firehose";

const binary = process.env.SLUICE_BIN ?? resolve(import.meta.dirname, "../../target/debug/sluice");
let server;
let dataDir;
let client;

before(async () => {
  dataDir = mkdtempSync(join(tmpdir(), "sluice-node-firehose-"));
  server = spawn(binary, ["serve", "--listen", "127.0.0.1:0", "--data-dir", dataDir], { stdio: ["ignore", "pipe", "inherit"] });
  const line = await new Promise((ok, fail) => {
    createInterface({ input: server.stdout }).once("line", ok);
    server.once("exit", (code) => fail(new Error(`sluice exited with ${code}`)));
  });
  assert.match(line, /^sluice listening on /);
  client = new FirehoseClient({
    endpoint: `http://${line.split(" ").pop()}`,
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
  await assert.rejects(client.send(new PutRecordCommand({ DeliveryStreamName: "node", Record: { Data: new Uint8Array([1]) } })),
    (e) => e instanceof InvalidArgumentException && /does not deliver Firehose records yet/.test(e.message));
  await client.send(new DeleteDeliveryStreamCommand({ DeliveryStreamName: "node" }));
  await assert.rejects(client.send(new DescribeDeliveryStreamCommand({ DeliveryStreamName: "node" })), ResourceNotFoundException);
});
