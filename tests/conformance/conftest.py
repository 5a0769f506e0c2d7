"""Starts a real `sluice serve` on a free port for the boto3 tests."""
import contextlib
import os
import pathlib
import subprocess
import tempfile

import boto3
import pytest
from botocore.config import Config

ROOT = pathlib.Path(__file__).resolve().parents[2]


BINARY = os.environ.get("SLUICE_BIN", str(ROOT / "target" / "debug" / "sluice"))


@contextlib.contextmanager
def sluice(*args, data_dir=None, stderr=None, preexec_fn=None, env=None):
    """A `sluice serve` process on a free port: (process, endpoint). Its data
    directory is `data_dir`, or a temporary one of its own."""
    with contextlib.ExitStack() as stack:
        if data_dir is None:
            data_dir = stack.enter_context(tempfile.TemporaryDirectory())
        proc = subprocess.Popen(
            [BINARY, "serve", "--listen", "127.0.0.1:0", "--data-dir", str(data_dir), *args],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            preexec_fn=preexec_fn,
            env=env,
        )
        line = proc.stdout.readline()
        assert line.startswith("sluice listening on "), line
        try:
            yield proc, "http://" + line.split()[-1]
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def client(endpoint, retries=None, access_key="AKIDEXAMPLE", region="us-east-1"):
    return boto3.client(
        "kinesis",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=access_key,
        aws_secret_access_key="secret",
        config=Config(retries=retries or {"max_attempts": 1}),
    )


@pytest.fixture(scope="session")
def server():
    """The `sluice serve` process the tests share, and its endpoint. AWS's
    per-shard throughput limits are off here, so that tests that write fast
    do not depend on timing; tests of the limits start their own server."""
    with sluice("--limits", "off") as server:
        yield server


@pytest.fixture(scope="session")
def endpoint(server):
    return server[1]


@pytest.fixture()
def kinesis(endpoint):
    return client(endpoint)


@pytest.fixture()
def stream(kinesis, request):
    name = "s-" + request.node.name.replace("[", "-").replace("]", "")[:100]
    kinesis.create_stream(StreamName=name, ShardCount=2)
    yield name
    try:
        kinesis.delete_stream(StreamName=name, EnforceConsumerDeletion=True)
    except kinesis.exceptions.ResourceNotFoundException:
        pass
