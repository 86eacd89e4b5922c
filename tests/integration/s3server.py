"""A real S3-API server on loopback for the ``s3`` content tests: moto's server, with IAM on.

The server runs in its own process (``python -m moto.server``) and holds everything in memory.
Two IAM users are made before authentication is switched on (moto's ``/moto-api/reset-auth``),
so every later request is signed and checked as a real one would be:
- ``admin`` may do anything: the tests put buckets and objects with it;
- ``screening`` is what a worker gets: GetObject and GetObjectVersion on every bucket except
  those named ``private-*``, where an explicit deny gives the real 403 AccessDenied.
Unknown access keys get moto's InvalidAccessKeyId. A worker is allowed the buckets this module
makes (:data:`ALLOWED_BUCKETS`) and any other prefix is not; the server's log lists every
request it answered (:meth:`S3Server.requests`), so a test can show one was never made.
Loopback only; the objects are generated pictures.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from pipeline.adapters.broker import free_port
from pipeline.fetch_policy import S3Access
from tests.integration.harness import http_get, wait_until

REGION = "us-east-1"
#: What the screening user may do: read objects, except in buckets named private-*.
SCREENING_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:GetObjectVersion"],
            "Resource": "arn:aws:s3:::*/*",
        },
        {"Effect": "Deny", "Action": "s3:*", "Resource": "arn:aws:s3:::private-*/*"},
    ],
}
#: PIPELINE_S3_BUCKETS of the workers the tests start: the prefixes of :meth:`S3Server.bucket`
#: the tests use, and the one bucket that is never made. Buckets of any other prefix (say
#: ``elsewhere-``) are readable by the screening user but not allowed to the worker.
ALLOWED_BUCKETS = ("uploads-*", "history-*", "private-*", "never-made-bucket")
ADMIN_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str


class S3Server:
    """moto's S3 (and IAM) server in a subprocess, with authentication switched on."""

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.admin = Credentials("", "")
        self.screening = Credentials("", "")
        self._admin_client: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> S3Server:
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        wait_until(self._answers, 30, interval=0.1, what="moto server")
        self.admin = self._user("admin", ADMIN_POLICY)
        self.screening = self._user("screening", SCREENING_POLICY)
        request = urllib.request.Request(
            f"{self.url}/moto-api/reset-auth",
            data=b"0",  # authenticate from the next request on
            method="POST",
            headers={"Content-Type": "text/plain"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200
        return self

    def _answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"moto server exited: {self.log_path.read_text()[-2000:]}")
        try:
            return http_get(f"{self.url}/moto-api/", timeout=1)[0] == 200
        except OSError:
            return False

    def _user(self, name: str, policy: dict[str, Any]) -> Credentials:
        """An IAM user with an inline policy and an access key (before auth is on)."""
        iam = self._client("iam", Credentials("setup", "setup"))
        iam.create_user(UserName=name)
        iam.put_user_policy(UserName=name, PolicyName=name, PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return Credentials(key["AccessKeyId"], key["SecretAccessKey"])

    def _client(self, service: str, credentials: Credentials) -> Any:
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=credentials.access_key_id,
            aws_secret_access_key=credentials.secret_access_key,
        )

    @property
    def s3(self) -> Any:
        """A boto3 S3 client acting as ``admin``."""
        if self._admin_client is None:
            self._admin_client = self._client("s3", self.admin)
        return self._admin_client

    def requests(self) -> list[str]:
        """Every request the server has logged so far, as ``METHOD /path``, oldest first."""
        return re.findall(r'"([A-Z]+ /\S*) HTTP/[0-9.]+"', self.log_path.read_text())

    def bucket(self, prefix: str = "uploads", versioned: bool = False) -> str:
        """A new bucket ``<prefix>-<random>``, versioned if asked."""
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        self.s3.create_bucket(Bucket=name)
        if versioned:
            self.s3.put_bucket_versioning(
                Bucket=name, VersioningConfiguration={"Status": "Enabled"}
            )
        return name

    def put(self, bucket: str, key: str, data: bytes) -> str | None:
        """Store an object; its version id (None in an unversioned bucket)."""
        version = self.s3.put_object(Bucket=bucket, Key=key, Body=data).get("VersionId")
        return None if version in (None, "null") else str(version)

    def access(self, credentials: Credentials | None = None, **changes: Any) -> S3Access:
        """How a worker reaches this server (as ``screening`` unless told otherwise)."""
        credentials = credentials or self.screening
        fields: dict[str, Any] = {
            "endpoint_url": self.url,
            "region": REGION,
            "access_key_id": credentials.access_key_id,
            "addressing_style": "path",
            "buckets": ALLOWED_BUCKETS,
            **changes,
        }
        return S3Access(secret_access_key=SecretStr(credentials.secret_access_key), **fields)

    def worker_settings(self) -> dict[str, str]:
        """PIPELINE_S3_* for a worker process (keyword arguments of ``start_worker``)."""
        return {
            "s3_endpoint_url": self.url,
            "s3_region": REGION,
            "s3_access_key_id": self.screening.access_key_id,
            "s3_secret_access_key": self.screening.secret_access_key,
            "s3_addressing_style": "path",
            "s3_buckets": ",".join(ALLOWED_BUCKETS),
        }

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
