"""A real S3 API on 127.0.0.1 for the object-storage tests: moto's server, started in the test
process (``moto[server]``), with credentials and the endpoint in the environment, where s3fs and
every genbatch process the tests start (CLI, subprocesses, Ray workers) find them as they would
find a real account's. It counts the requests it serves, by kind, for the tests and benchmarks."""

from __future__ import annotations

import logging
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest


@dataclass
class S3Server:
    endpoint: str
    requests: Counter = field(default_factory=Counter)
    reads: Counter = field(default_factory=Counter)  # object GETs by path: /bucket/key
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def environment(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AWS_ENDPOINT_URL": self.endpoint,
        }

    def count(self, method: str, query: str, path: str = "") -> None:
        kind = "LIST" if method == "GET" and ("list-type" in query or query.startswith("prefix")) else method
        with self._lock:
            self.requests[kind] += 1
            if kind == "GET":
                self.reads[path] += 1

    def new_bucket(self) -> str:
        """A fresh, empty bucket's name."""
        import boto3

        name = f"genbatch-{uuid.uuid4().hex[:12]}"
        boto3.client("s3", endpoint_url=self.endpoint, **_credentials()).create_bucket(Bucket=name)
        return name

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, **_credentials())

    def buckets(self) -> list[str]:
        return [b["Name"] for b in self.client().list_buckets().get("Buckets", [])]

    def keys(self, bucket: str, prefix: str = "") -> dict[str, int]:
        """key -> size under ``prefix`` (relative to it)."""
        found: dict[str, int] = {}
        for page in self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                found[item["Key"][len(prefix) :].lstrip("/")] = item["Size"]
        return found

    def read(self, bucket: str, key: str) -> bytes:
        return self.client().get_object(Bucket=bucket, Key=key)["Body"].read()


def _credentials() -> dict[str, str]:
    return {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}


@contextmanager
def running_s3_server() -> Iterator[S3Server]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    assert host == "127.0.0.1"
    s3 = S3Server(f"http://127.0.0.1:{port}")
    app = server._server.app  # count every request the WSGI app serves

    def counting(environ, start_response):
        s3.count(environ.get("REQUEST_METHOD", ""), environ.get("QUERY_STRING", ""), environ.get("PATH_INFO", ""))
        return app(environ, start_response)

    server._server.app = counting
    try:
        yield s3
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    pytest.importorskip("s3fs")
    with running_s3_server() as server:
        yield server


@pytest.fixture
def s3(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """The S3 server, its endpoint and test credentials in this test's environment."""
    for name, value in s3_server.environment().items():
        monkeypatch.setenv(name, value)
    import fsspec

    fsspec.filesystem("s3").clear_instance_cache()
    from genbatch.bucket import open_bucket

    open_bucket.cache_clear()
    return s3_server
