"""Starts a real `sluice serve` on a free port for the boto3 tests."""
import os
import pathlib
import subprocess
import tempfile

import boto3
import pytest
from botocore.config import Config

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def endpoint():
    binary = os.environ.get("SLUICE_BIN", str(ROOT / "target" / "debug" / "sluice"))
    with tempfile.TemporaryDirectory() as data_dir:
        proc = subprocess.Popen(
            [binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", data_dir],
            stdout=subprocess.PIPE,
            text=True,
        )
        line = proc.stdout.readline()
        assert line.startswith("sluice listening on "), line
        yield "http://" + line.split()[-1]
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture()
def kinesis(endpoint):
    return boto3.client(
        "kinesis",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        config=Config(retries={"max_attempts": 1}),
    )


@pytest.fixture()
def stream(kinesis, request):
    name = "s-" + request.node.name.replace("[", "-").replace("]", "")[:100]
    kinesis.create_stream(StreamName=name, ShardCount=2)
    yield name
    try:
        kinesis.delete_stream(StreamName=name)
    except kinesis.exceptions.ResourceNotFoundException:
        pass
