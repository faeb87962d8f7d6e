"""A real S3 HTTP endpoint on loopback for tests: ``moto_server`` as a subprocess.

Each :class:`MotoS3` is its own process on a free port with its own bucket, so the
service under test talks S3 over HTTP exactly as it would to MinIO or AWS (signed
requests, multipart uploads, ranges), and a test can stop it to simulate an outage.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

# moto checks signatures after the first requests (INITIAL_NO_AUTH_ACTION_COUNT): those
# create an IAM user and its key, so only that key works afterwards, as on a real store
SETUP_REQUESTS = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _moto_command(host: str, port: int) -> list[str]:
    exe = shutil.which("moto_server", path=str(Path(sys.executable).parent))
    head = [exe] if exe else [sys.executable, "-m", "moto.server"]
    return [*head, "-H", host, "-p", str(port)]


class MotoS3:
    """``with MotoS3(log_dir) as s3:`` a bucket at ``s3.endpoint``; ``s3.env`` is what a
    service process needs (``PRUNEKIT_STORAGE``, endpoint, credentials)."""

    def __init__(
        self,
        log_dir: Path,
        bucket: str | None = None,
        prefix: str = "pk",
        auth: bool = True,
        host: str = "127.0.0.1",
    ) -> None:
        self.host = host  # 0.0.0.0: reachable from network namespaces too
        self.auth = auth  # False: moto checks no signature (it cannot check presigned URLs)
        self.log_dir = log_dir
        self.bucket = bucket or f"prunekit-{uuid.uuid4().hex[:8]}"
        self.prefix = prefix
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.access_key = ""
        self.secret_key = ""

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    @property
    def env(self) -> dict[str, str]:
        return {
            "PRUNEKIT_STORAGE": self.url,
            "PRUNEKIT_S3_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def start(self) -> MotoS3:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = (self.log_dir / f"moto-{self.port}.log").open("ab")
        env = dict(os.environ)
        if self.auth:
            env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(SETUP_REQUESTS)
        self.proc = subprocess.Popen(
            _moto_command(self.host, self.port), stdout=log, stderr=subprocess.STDOUT, env=env,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto_server exited; see {log.name}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError("moto_server did not listen within 30 s")
        self._create_key()
        self.client().create_bucket(Bucket=self.bucket)
        return self

    def _create_key(self) -> None:
        iam = self.client("iam", "setup", "setup")
        iam.create_user(UserName="prunekit")
        policy = {"Version": "2012-10-17",
                  "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}  # fmt: skip
        iam.put_user_policy(
            UserName="prunekit", PolicyName="all", PolicyDocument=json.dumps(policy)
        )
        key = iam.create_access_key(UserName="prunekit")["AccessKey"]
        self.access_key, self.secret_key = key["AccessKeyId"], key["SecretAccessKey"]

    def client(self, service: str = "s3", access: str = "", secret: str = "") -> Any:
        import boto3

        return boto3.session.Session().client(
            service,
            endpoint_url=self.endpoint,
            aws_access_key_id=access or self.access_key,
            aws_secret_access_key=secret or self.secret_key,
            region_name="us-east-1",
        )

    def all_keys(self) -> list[str]:
        """Every key in the bucket (the whole store as the service left it)."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def __enter__(self) -> MotoS3:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
