"""``certify submit``: upload appliances to a certification service and submit scans of them.

Each file is hashed, uploaded unless the server already holds it for this
tenant (a HEAD on the blob), and submitted; with ``--wait`` the scan is
followed until it ends and its report printed. Standard library HTTP only:
the client must not need the server's dependencies.

Exit codes, like ``scan`` when waited on: 0 certified (or, without
``--wait``, all submitted), 1 not certified or rejected, 2 usage error
(bad flags, file unreadable, the server refused the request or the token),
3 the scan failed or ended in error, or the server could not be reached.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from certify.errors import CertifyError, UsageError

POLL_SECONDS = 2.0
CHUNK = 1 << 20
EXIT_BY_VERDICT = {"pass": 0, "fail": 1, "rejected": 1, "error": 3}


class ServiceUnreachable(CertifyError):
    """The server could not be reached or answered nonsense (exit 3)."""


class ServiceRefused(UsageError):
    """The server refused a request: auth, scope, bad input (exit 2)."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            raise ServiceUnreachable(f"the server answered {self.status} with a body that is not JSON") from None


class Client:
    def __init__(self, server: str, token: str, timeout: float = 60.0) -> None:
        parts = urlsplit(server)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"--server {server[:80]!r}: not an http:// or https:// URL")
        self.server = server.rstrip("/")
        self.parts = parts
        self.token = token
        self.timeout = timeout

    def _connection(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self.parts.scheme == "https" else http.client.HTTPConnection
        return cls(self.parts.hostname, self.parts.port, timeout=self.timeout)

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Answer:
        sent = {"Authorization": f"Bearer {self.token}", "Accept": "application/json", **(headers or {})}
        prefix = self.parts.path.rstrip("/")
        connection = self._connection()
        try:
            connection.request(method, prefix + path, body=body, headers=sent)
            response = connection.getresponse()
            data = response.read()
            return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
        except (OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise ServiceUnreachable(f"{self.server}: {reason}") from None
        finally:
            connection.close()

    def expect(self, answer: Answer, *ok: int, what: str) -> Answer:
        if answer.status in ok:
            return answer
        detail = ""
        try:
            detail = json.loads(answer.body).get("detail", "")
        except (ValueError, AttributeError):
            pass
        if answer.status == 401:
            raise ServiceRefused(f"{self.server}: the token was refused (401): {detail or 'unauthorized'}")
        if answer.status == 403:
            raise ServiceRefused(f"{self.server}: the token may not do this (403): {detail}")
        if 400 <= answer.status < 500:
            raise ServiceRefused(f"{what}: refused ({answer.status}): {detail or 'no detail'}")
        raise ServiceUnreachable(f"{what}: the server answered {answer.status}: {detail or 'no detail'}")


def sha256_file(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def submit_one(client: Client, path: Path, profile: str, log) -> dict[str, Any]:  # noqa: ANN001
    try:
        digest, size = sha256_file(path)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror or exc}") from None
    blob = f"/v1/blobs/sha256:{digest}"
    head = client.request("HEAD", blob)
    if head.status == 404:
        with path.open("rb") as f:
            client.expect(client.request("PUT", blob, body=f, headers={
                "Content-Length": str(size), "Content-Type": "application/octet-stream",
                "X-Filename": path.name[:255]}), 200, 201, what=f"{path}: upload")
        log(f"{path}: uploaded sha256:{digest} ({size} bytes)")
    else:
        client.expect(head, 200, what=f"{path}: blob lookup")
        log(f"{path}: the server already holds sha256:{digest}")
    body = json.dumps({"artifact": f"sha256:{digest}", "filename": path.name[:255], "profile": profile})
    answer = client.expect(client.request("POST", "/v1/scans", body=body.encode(),
                                          headers={"Content-Type": "application/json"}),
                           200, 202, what=f"{path}: submit")
    return answer.json()


def wait_for(client: Client, scan: dict[str, Any], path: Path, log) -> dict[str, Any]:  # noqa: ANN001
    seen = None
    while True:
        now = (scan.get("state"), scan.get("stage"))
        if now != seen:
            log(f"{path}: {scan['id']} {now[0]}" + (f" ({now[1]})" if now[1] else ""))
            seen = now
        if scan.get("state") in ("succeeded", "failed", "cancelled"):
            return scan
        time.sleep(POLL_SECONDS)
        scan = client.expect(client.request("GET", f"/v1/scans/{scan['id']}"), 200, what=f"{path}: poll").json()


def run_submit(paths: list[str], server: str, token: str | None, profile: str, wait: bool, fmt: str) -> int:
    token = token or os.environ.get("CERTIFY_TOKEN")
    if not token:
        raise UsageError("no token: pass --token or set CERTIFY_TOKEN")
    client = Client(server, token)
    files = [Path(p) for p in paths]
    for f in files:
        if not f.is_file():
            raise UsageError(f"{f}: not a readable file")

    def log(text: str) -> None:
        print(f"certify submit: {text}", file=sys.stderr, flush=True)

    worst = 0
    for path in files:
        scan = submit_one(client, path, profile, log)
        if not wait:
            print(json.dumps(scan) if fmt == "json" else f"{path}\t{scan['id']}\t{scan['state']}", flush=True)
            continue
        scan = wait_for(client, scan, path, log)
        if scan["state"] != "succeeded":
            reason = scan.get("failure_reason") or scan["state"]
            log(f"{path}: {scan['id']} {scan['state']} ({reason}): no verdict")
            code = 3
        else:
            code = EXIT_BY_VERDICT.get(scan.get("verdict") or "error", 3)
        if fmt == "json":
            report = None
            if scan["state"] == "succeeded":
                report = client.expect(client.request("GET", f"/v1/scans/{scan['id']}/report?format=json"),
                                       200, what=f"{path}: report").json()
            print(json.dumps({"path": str(path), "scan": scan, "report": report}), flush=True)
        else:
            print(f"{path}\t{scan['id']}\t{scan['state']}\t{scan.get('verdict') or '-'}", flush=True)
        worst = max(worst, code)  # 0 certified < 1 not certified < 3 not judged
    return worst
