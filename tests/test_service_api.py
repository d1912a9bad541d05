"""The HTTP API, served for real: ``certify serve`` as a subprocess on a free loopback port.

The main suite runs on SQLite (one session server, no workers); a smaller smoke
runs the same server on a throwaway PostgreSQL. Finished scans are driven
through the store by the test (claim_next, complete) with a JSON report that
``certify scan`` really produced for an upload built here, so no guest is
launched. Tokens are made with the real token module in the server's database.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import positive_data_acceptance

from certify.service import tokens
from certify.service.db import sqlite_url
from certify.service.serve import Supervisor
from certify.service.settings import ServiceSettings
from certify.service.store import Store
from pgserver import postgres_server  # noqa: F401 - fixture

PROBLEM = "application/problem+json"
MAX_UPLOAD = 1 << 20
_LISTENING = re.compile(r"listening on (http://\S+)")


@dataclass
class Served:
    url: str
    data: Path
    db_url: str
    process: subprocess.Popen
    log: list[str]

    def store(self) -> Store:
        return Store.open(self.db_url, migrate=False)


def start_server(data: Path, *extra: str, db_url: str | None = None) -> Served:
    command = [sys.executable, "-m", "certify", "serve", "--data", str(data), "--port", "0", "--workers", "0", *extra]
    if db_url:
        command += ["--db", db_url]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    log: list[str] = []
    for line in process.stderr:
        log.append(line)
        found = _LISTENING.search(line)
        if found:
            break
    else:
        process.wait()
        raise AssertionError(f"certify serve did not start ({process.returncode}): {''.join(log)}")
    # Keep draining stderr so the server never blocks on a full pipe.
    threading.Thread(target=lambda: log.extend(process.stderr), daemon=True).start()
    return Served(found.group(1), data, db_url or sqlite_url(data), process, log)


def stop_server(served: Served, sig: int = signal.SIGTERM) -> int:
    served.process.send_signal(sig)
    return served.process.wait(timeout=30)


def make_token(served: Served, tenant: str, scopes: str) -> str:
    store = served.store()
    try:
        return tokens.create(store, tenant, scopes).secret
    finally:
        store.close()


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    served = start_server(tmp_path_factory.mktemp("svc") / "data", "--max-upload", str(MAX_UPLOAD))
    yield served
    assert stop_server(served) == 0


@pytest.fixture(scope="session")
def acme(server):
    return make_token(server, "acme", "submit,read")


@pytest.fixture(scope="session")
def globex(server):
    return make_token(server, "globex", "submit,read")


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def client(server: Served, token: str | None = None) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers=auth(token) if token else {}, timeout=30)


def assert_problem(response: httpx.Response, status: int, *words: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert set(body) == {"type", "title", "status", "detail", "instance"}
    assert body["status"] == status
    for word in words:
        assert word.lower() in body["detail"].lower(), body
    return body


def blob_of(text: str) -> tuple[bytes, str]:
    data = (text * 64).encode()
    return data, hashlib.sha256(data).hexdigest()


def upload(server: Served, token: str, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    with client(server, token) as c:
        r = c.put(f"/v1/blobs/sha256:{digest}", content=data)
    assert r.status_code in (200, 201), r.text
    return digest


def blob_paths(data: Path) -> list[Path]:
    return sorted(p for p in (data / "sha256").rglob("*") if p.is_file()) if (data / "sha256").exists() else []


# -- health, auth ----------------------------------------------------------------------------------

def test_health_and_readiness_need_no_token(server):
    with client(server) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        assert c.get("/readyz").json() == {"status": "ready"}


@pytest.mark.parametrize("method,path", [
    ("GET", "/v1/metadata"), ("GET", "/v1/scans"), ("POST", "/v1/scans"), ("GET", "/v1/scans/scn_x"),
    ("PUT", "/v1/blobs/sha256:" + "0" * 64), ("GET", "/v1/nowhere"), ("DELETE", "/v1/scans"),
])
@pytest.mark.parametrize("header", [None, "Bearer cfy_" + "A" * 43, "Basic dXNlcjpwdw==", "Bearer not-a-token"])
def test_without_a_valid_token_every_v1_request_gets_401_and_nothing_else(server, method, path, header):
    headers = {"Authorization": header} if header else {}
    with client(server) as c:
        r = c.request(method, path, headers=headers, content=b"{not json")
    assert_problem(r, 401)
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_a_revoked_token_is_refused_at_once(server):
    store = server.store()
    try:
        made = tokens.create(store, "acme", "read")
        with client(server, made.secret) as c:
            assert c.get("/v1/scans").status_code == 200
            tokens.revoke(store, made.id)
            assert_problem(c.get("/v1/scans"), 401)
    finally:
        store.close()


def test_missing_scope_is_403(server):
    reader = make_token(server, "acme", "read")
    data, digest = blob_of("read-only")
    with client(server, reader) as c:
        assert_problem(c.put(f"/v1/blobs/sha256:{digest}", content=data), 403, "submit")
        assert_problem(c.post("/v1/scans", json={"artifact": "sha256:" + digest, "filename": "a.ova"}), 403, "submit")
        assert_problem(c.post("/v1/scans/scn_x/cancel"), 403, "submit")
    submitter = make_token(server, "acme", "submit")
    with client(server, submitter) as c:
        assert_problem(c.get("/v1/scans"), 403, "read")
        assert_problem(c.get("/v1/metadata"), 403, "read")
        assert c.head(f"/v1/blobs/sha256:{digest}").status_code == 404  # whether to upload: a submitter may ask
    assert not (server.data / "sha256" / digest[:2] / digest[2:4] / digest).exists()


def test_unknown_routes_and_methods_are_problems(server, acme):
    with client(server, acme) as c:
        assert_problem(c.get("/v1/nowhere"), 404, "/v1/nowhere")
        assert_problem(c.delete("/v1/scans"), 405, "DELETE")
    with client(server) as c:
        assert_problem(c.get("/nowhere"), 404)


# -- blobs -----------------------------------------------------------------------------------------

def test_upload_is_stored_under_its_digest_and_head_tells_the_tenant_only(server, acme, globex):
    data, digest = blob_of("upload-ok")
    with client(server, acme) as c:
        assert c.head(f"/v1/blobs/sha256:{digest}").status_code == 404
        r = c.put(f"/v1/blobs/sha256:{digest}", content=data)
        assert r.status_code == 201 and r.json() == {"digest": "sha256:" + digest, "size": len(data), "created": True}
        again = c.put(f"/v1/blobs/sha256:{digest}", content=data)
        assert again.status_code == 200 and again.json()["created"] is False
        head = c.head(f"/v1/blobs/sha256:{digest}")
        assert head.status_code == 200 and head.headers["content-length"] == str(len(data))
    path = server.data / "sha256" / digest[:2] / digest[2:4] / digest
    assert path.read_bytes() == data
    with client(server, globex) as c:
        assert c.head(f"/v1/blobs/sha256:{digest}").status_code == 404  # another tenant's upload stays unseen


def test_a_streamed_chunked_upload_is_accepted(server, acme):
    data, digest = blob_of("chunked")
    with client(server, acme) as c:
        r = c.put(f"/v1/blobs/sha256:{digest}", content=iter([data[:100], data[100:]]))
    assert r.status_code == 201, r.text


def test_bad_uploads_are_refused_and_leave_nothing(server, acme):
    before = blob_paths(server.data)
    data, digest = blob_of("bad-uploads")
    wrong = hashlib.sha256(b"something else").hexdigest()
    with client(server, acme) as c:
        assert_problem(c.put(f"/v1/blobs/sha256:{wrong}", content=data), 400, "hash to", wrong)
        assert_problem(c.put("/v1/blobs/sha256:ABC", content=data), 400, "not a sha256")
        big = b"x" * (MAX_UPLOAD + 1)
        assert_problem(c.put(f"/v1/blobs/sha256:{hashlib.sha256(big).hexdigest()}", content=big), 413, "limit")
        # Chunked, so the size is only known as it streams in.
        assert_problem(c.put(f"/v1/blobs/sha256:{hashlib.sha256(big).hexdigest()}",
                             content=iter([big[: MAX_UPLOAD // 2], big[MAX_UPLOAD // 2:]])), 413, "limit")
        assert c.head(f"/v1/blobs/sha256:{wrong}").status_code == 404
    assert blob_paths(server.data) == before
    leftovers = list((server.data / "sha256").rglob(".upload-*")) if (server.data / "sha256").exists() else []
    assert leftovers == []


def _raw_put(server: Served, token: str, digest: str, announced: int, sent: bytes) -> bytes:
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall((f"PUT /v1/blobs/sha256:{digest} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
                   f"Content-Length: {announced}\r\n\r\n").encode() + sent)
        s.shutdown(socket.SHUT_WR)  # the client goes away mid-body
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
        return answer


def test_a_truncated_upload_stores_nothing(server, acme):
    data, digest = blob_of("truncated")
    before = blob_paths(server.data)
    _raw_put(server, acme, digest, len(data), data[: len(data) // 2])
    with client(server, acme) as c:
        assert c.head(f"/v1/blobs/sha256:{digest}").status_code == 404
    assert blob_paths(server.data) == before


def test_an_upload_without_a_length_or_chunks_is_411(server, acme):
    _, digest = blob_of("no-length")
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(f"PUT /v1/blobs/sha256:{digest} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {acme}\r\n"
                  f"Connection: close\r\n\r\n".encode())
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 411") and b"application/problem+json" in head
    assert b"Content-Length" in body


def test_an_upload_that_would_eat_the_reserve_is_507(tmp_path):
    served = start_server(tmp_path / "data", "--reserve", "1P")
    try:
        token = make_token(served, "acme", "submit,read")
        data, digest = blob_of("reserve")
        with client(served, token) as c:
            assert_problem(c.put(f"/v1/blobs/sha256:{digest}", content=data), 507, "free")
        assert blob_paths(served.data) == []
    finally:
        assert stop_server(served) == 0


# -- scans -----------------------------------------------------------------------------------------

def test_submit_queues_a_scan_and_the_natural_key_returns_it(server, acme):
    digest = upload(server, acme, blob_of("natural-key")[0])
    body = {"artifact": "sha256:" + digest, "filename": "app.ova", "profile": "default", "labels": {"ci": "1"}}
    with client(server, acme) as c:
        first = c.post("/v1/scans", json=body)
        assert first.status_code == 202, first.text
        scan = first.json()
        assert first.headers["location"] == f"/v1/scans/{scan['id']}"
        assert scan["state"] == "queued" and scan["verdict"] is None and scan["attempt"] == 1
        assert scan["artifact"] == "sha256:" + digest and scan["labels"] == {"ci": "1"}
        meta = c.get("/v1/metadata").json()
        assert scan["ruleset_digest"] == meta["ruleset_digest"]
        assert scan["profile_digest"] == next(p["digest"] for p in meta["profiles"] if p["name"] == "default")
        again = c.post("/v1/scans", json=body)
        assert again.status_code == 200 and again.json()["id"] == scan["id"]
        forced = c.post("/v1/scans", json={**body, "force": True})
        assert forced.status_code == 202 and forced.json()["id"] != scan["id"]
        assert c.get(f"/v1/scans/{scan['id']}").json()["id"] == scan["id"]


WAIVERS = "- check: ssh-root-login\n  reason: vendor appliance, console only\n  expires: 2099-01-01\n"


def test_other_waivers_are_another_scan_and_the_same_waivers_the_same(server, acme):
    digest = upload(server, acme, blob_of("waivers")[0])
    body = {"artifact": "sha256:" + digest, "filename": "app.ova", "profile": "default"}
    with client(server, acme) as c:
        plain = c.post("/v1/scans", json=body).json()
        waived = c.post("/v1/scans", json={**body, "waivers": WAIVERS})
        assert waived.status_code == 202 and waived.json()["id"] != plain["id"]
        # The waivers are a key of their own: the profile digest stays the profile's, as the report says.
        assert waived.json()["profile_digest"] == plain["profile_digest"]
        assert plain["waivers_digest"] is None
        assert waived.json()["waivers_digest"] == "sha256:" + hashlib.sha256(WAIVERS.encode()).hexdigest()
        again = c.post("/v1/scans", json={**body, "waivers": WAIVERS})
        assert again.status_code == 200 and again.json()["id"] == waived.json()["id"]
        other = c.post("/v1/scans", json={**body, "waivers": WAIVERS.replace("2099", "2098")})
        assert other.status_code == 202 and other.json()["id"] not in (plain["id"], waived.json()["id"])
        assert c.post("/v1/scans", json=body).json()["id"] == plain["id"]


def test_profiles_with_the_same_content_are_distinct_scans(server, acme):
    """default and isv-selftest have one digest; each submission still gets a scan under its own name."""
    with client(server, acme) as c:
        profiles = {p["name"]: p["digest"] for p in c.get("/v1/metadata").json()["profiles"]}
    assert profiles["default"] == profiles["isv-selftest"]  # what makes this test needed
    digest = upload(server, acme, blob_of("twin profiles")[0])
    body = {"artifact": "sha256:" + digest, "filename": "app.ova"}
    with client(server, acme) as c:
        default = c.post("/v1/scans", json={**body, "profile": "default"})
        selftest = c.post("/v1/scans", json={**body, "profile": "isv-selftest"})
        assert (default.status_code, selftest.status_code) == (202, 202)
        assert default.json()["id"] != selftest.json()["id"]
        assert (default.json()["profile"], selftest.json()["profile"]) == ("default", "isv-selftest")
        for name, first in (("default", default), ("isv-selftest", selftest)):
            again = c.post("/v1/scans", json={**body, "profile": name})
            assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
            waived = c.post("/v1/scans", json={**body, "profile": name, "waivers": WAIVERS})
            assert waived.status_code == 202 and waived.json()["profile"] == name
            assert c.post("/v1/scans", json={**body, "profile": name, "waivers": WAIVERS}).json()["id"] == \
                waived.json()["id"]


def test_idempotency_key_replays_and_refuses_another_body(server, acme):
    digest = upload(server, acme, blob_of("idempotency")[0])
    body = {"artifact": "sha256:" + digest, "filename": "app.ova", "profile": "default", "force": True}
    key = {"Idempotency-Key": "build-1234"}
    with client(server, acme) as c:
        first = c.post("/v1/scans", json=body, headers=key)
        assert first.status_code == 202
        replay = c.post("/v1/scans", json=body, headers=key)  # force, yet the retry makes nothing new
        assert replay.status_code == 200 and replay.json()["id"] == first.json()["id"]
        assert_problem(c.post("/v1/scans", json={**body, "filename": "other.ova"}, headers=key), 422,
                       "build-1234", "another request body")


def test_twenty_concurrent_submissions_make_one_scan(server, acme):
    digest = upload(server, acme, blob_of("concurrent")[0])
    body = {"artifact": "sha256:" + digest, "filename": "app.ova", "profile": "default"}
    barrier = threading.Barrier(20)

    def post(_: int) -> httpx.Response:
        with client(server, acme) as c:
            barrier.wait()
            return c.post("/v1/scans", json=body)

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(post, range(20)))
    assert {r.status_code for r in answers} <= {200, 202}
    assert [r.status_code for r in answers].count(202) == 1
    assert len({r.json()["id"] for r in answers}) == 1


@pytest.mark.parametrize("body,status,words", [
    ({"artifact": "sha256:" + "1" * 64, "filename": "a.ova"}, 422, ["sha256:" + "1" * 64, "not been uploaded"]),
    ({"artifact": "sha256:XYZ", "filename": "a.ova"}, 422, ["artifact"]),
    ({"artifact": "sha256:{known}", "filename": "a.ova", "profile": "no-such-profile"}, 422, ["no-such-profile"]),
    ({"artifact": "sha256:{known}", "filename": "a.ova", "waivers": "- check: [unclosed"}, 422, ["waivers"]),
    ({"artifact": "sha256:{known}", "filename": "a.ova", "waivers": "- nope: 1"}, 422, ["waivers"]),
    ({"artifact": "sha256:{known}", "filename": ""}, 422, ["filename"]),
    ({"artifact": "sha256:{known}", "filename": "a.ova", "priority": "high"}, 422, ["priority"]),
    ({"artifact": "sha256:{known}", "filename": "a.ova", "surprise": 1}, 422, ["surprise"]),
    ({"filename": "a.ova"}, 422, ["artifact"]),
])
def test_bad_submissions_are_problems_naming_the_fault_and_store_nothing(server, acme, body, status, words):
    known = upload(server, acme, blob_of("bad-submissions")[0])
    body = json.loads(json.dumps(body).replace("{known}", known))
    with client(server, acme) as c:
        before = c.get("/v1/scans", params={"limit": 500}).json()["items"]
        assert_problem(c.post("/v1/scans", json=body), status, *words)
        assert c.get("/v1/scans", params={"limit": 500}).json()["items"] == before


def test_an_oversized_json_body_is_413_and_never_parsed(server, acme):
    huge = json.dumps({"artifact": "sha256:" + "0" * 64, "filename": "a.ova", "waivers": "#" * (2 << 20)}).encode()
    with client(server, acme) as c:
        assert_problem(c.post("/v1/scans", content=huge, headers={"Content-Type": "application/json"}), 413, "at most")
        assert_problem(c.post("/v1/scans", content=iter([huge[:1000], huge[1000:]]),
                              headers={"Content-Type": "application/json"}), 413, "at most")
    with client(server) as c:
        assert_problem(c.post("/v1/scans", content=huge), 401)



def test_a_chunked_json_body_under_the_cap_is_read(server, acme):
    digest = upload(server, acme, blob_of("chunked-json")[0])
    body = json.dumps({"artifact": "sha256:" + digest, "filename": "a.ova"}).encode()
    with client(server, acme) as c:
        r = c.post("/v1/scans", content=iter([body[:10], body[10:]]), headers={"Content-Type": "application/json"})
    assert r.status_code == 202, r.text


def test_malformed_json_is_400(server, acme):
    with client(server, acme) as c:
        assert_problem(c.post("/v1/scans", content=b'{"artifact": ', headers={"Content-Type": "application/json"}),
                       400, "not valid JSON")


def test_another_tenants_scans_and_artifacts_are_not_found(server, acme, globex):
    digest = upload(server, acme, blob_of("tenancy")[0])
    with client(server, acme) as c:
        scan = c.post("/v1/scans", json={"artifact": "sha256:" + digest, "filename": "a.ova"}).json()
    with client(server, globex) as c:
        assert_problem(c.get(f"/v1/scans/{scan['id']}"), 404, scan["id"])
        assert_problem(c.get(f"/v1/scans/{scan['id']}/report"), 404)
        assert_problem(c.get(f"/v1/scans/{scan['id']}/certificate"), 404)
        assert_problem(c.post(f"/v1/scans/{scan['id']}/cancel"), 404)
        assert scan["id"] not in {s["id"] for s in c.get("/v1/scans", params={"limit": 500}).json()["items"]}
        # globex never uploaded the blob: it cannot scan it by naming its digest.
        assert_problem(c.post("/v1/scans", json={"artifact": "sha256:" + digest, "filename": "a.ova"}), 422,
                       "not been uploaded")
        assert c.get(f"/v1/artifacts/sha256:{digest}").json()["verdicts"] == []
    with client(server, acme) as c:
        assert c.get(f"/v1/scans/{scan['id']}").json()["state"] == "queued"


def test_report_is_202_while_queued_and_cancel_of_a_queued_scan_is_immediate(server, acme):
    digest = upload(server, acme, blob_of("cancel")[0])
    with client(server, acme) as c:
        scan = c.post("/v1/scans", json={"artifact": "sha256:" + digest, "filename": "a.ova"}).json()
        pending = c.get(f"/v1/scans/{scan['id']}/report")
        assert pending.status_code == 202 and int(pending.headers["retry-after"]) > 0
        assert pending.json()["state"] == "queued"
        assert c.get(f"/v1/scans/{scan['id']}/certificate").status_code == 202
        cancelled = c.post(f"/v1/scans/{scan['id']}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
        assert_problem(c.get(f"/v1/scans/{scan['id']}/report"), 409, "cancelled")
        assert c.get("/v1/scans", params={"state": "cancelled"}).json()["items"][0]["id"] == scan["id"]


def test_list_filters_and_pages(server, acme):
    with client(server, acme) as c:
        ids = []
        for n in range(3):
            digest = upload(server, acme, blob_of(f"page-{n}")[0])
            ids.append(c.post("/v1/scans", json={"artifact": "sha256:" + digest, "filename": "a.ova"}).json()["id"])
        page = c.get("/v1/scans", params={"limit": 2}).json()
        assert [s["id"] for s in page["items"]] == ids[::-1][:2] and page["next_cursor"]
        following = c.get("/v1/scans", params={"limit": 2, "cursor": page["next_cursor"]}).json()
        assert following["items"][0]["id"] == ids[0]
        assert all(s["state"] == "queued" for s in c.get("/v1/scans", params={"state": "queued"}).json()["items"])
        assert_problem(c.get("/v1/scans", params={"cursor": "bogus"}), 400, "cursor")
        assert_problem(c.get("/v1/scans", params={"state": "sleeping"}), 422, "state")
        assert_problem(c.get("/v1/scans", params={"limit": 0}), 422, "limit")


# -- finished scans (driven through the store) -----------------------------------------------------

@pytest.fixture(scope="session")
def rejected_report(tmp_path_factory) -> tuple[bytes, str]:
    """A real report: ``certify scan`` of an upload that is not an OVA (rejected at ingest, no launch)."""
    where = tmp_path_factory.mktemp("rejected")
    upload_path = where / "junk.ova"
    upload_path.write_bytes(b"this is not a tar archive\n" * 200)
    done = subprocess.run([sys.executable, "-m", "certify", "scan", str(upload_path), "--format", "json"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    report = json.loads(done.stdout)
    assert report["verdict"] == "rejected"
    return upload_path.read_bytes(), done.stdout


def finish(server: Served, scan_id: str, report_json: str, verdict: str) -> None:
    store = server.store()
    try:
        while True:
            claim = store.claim_next("test-worker", 60)
            assert claim is not None, "the scan was not in the queue"
            if claim.scan.id == scan_id:
                store.complete(scan_id, "test-worker", claim.attempt, report_json, verdict)
                return
            store.fail(claim.scan.id, "test-worker", claim.attempt, "error", "not this test's scan")
    finally:
        store.close()


def test_a_finished_scan_serves_its_report_and_the_artifact_its_verdict(server, rejected_report):
    token = make_token(server, "finished", "submit,read")
    data, report_json = rejected_report
    digest = upload(server, token, data)
    with client(server, token) as c:
        scan = c.post("/v1/scans", json={"artifact": "sha256:" + digest, "filename": "junk.ova",
                                         "profile": "default"}).json()
        finish(server, scan["id"], report_json, "rejected")
        done = c.get(f"/v1/scans/{scan['id']}").json()
        assert done["state"] == "succeeded" and done["verdict"] == "rejected" and done["finished_at"]
        report = c.get(f"/v1/scans/{scan['id']}/report", params={"format": "json"})
        assert report.status_code == 200 and report.headers["content-type"].startswith("application/json")
        assert report.text == report_json
        assert_problem(c.get(f"/v1/scans/{scan['id']}/report", params={"format": "pdf"}), 422, "pdf")
        assert_problem(c.get(f"/v1/scans/{scan['id']}/certificate"), 404, "not pass")
        artifact = c.get(f"/v1/artifacts/sha256:{digest}").json()
        assert artifact["artifact"] == "sha256:" + digest
        assert [(v["profile"], v["verdict"], v["scan_id"]) for v in artifact["verdicts"]] == \
            [("default", "rejected", scan["id"])]
        assert c.get("/v1/scans", params={"verdict": "rejected"}).json()["items"][0]["id"] == scan["id"]
        assert_problem(c.get("/v1/artifacts/sha256:nothex"), 400, "sha256")


def test_the_artifact_lookup_has_a_verdict_under_each_of_two_profiles_with_the_same_content(server, rejected_report):
    token = make_token(server, "twins", "submit,read")
    data, report_json = rejected_report
    digest = upload(server, token, data)
    with client(server, token) as c:
        ids = {}
        for name in ("default", "isv-selftest"):
            scan = c.post("/v1/scans", json={"artifact": "sha256:" + digest, "filename": "junk.ova", "profile": name})
            assert scan.status_code == 202
            ids[name] = scan.json()["id"]
            finish(server, ids[name], report_json, "rejected")
        verdicts = c.get(f"/v1/artifacts/sha256:{digest}").json()["verdicts"]
        assert [(v["profile"], v["scan_id"], v["waivers_digest"]) for v in verdicts] == \
            [("default", ids["default"], None), ("isv-selftest", ids["isv-selftest"], None)]
        waived = c.post("/v1/scans", json={"artifact": "sha256:" + digest, "filename": "junk.ova",
                                           "profile": "isv-selftest", "waivers": WAIVERS}).json()
        finish(server, waived["id"], report_json, "rejected")
        latest = {v["profile"]: v for v in c.get(f"/v1/artifacts/sha256:{digest}").json()["verdicts"]}
        assert latest["isv-selftest"]["scan_id"] == waived["id"]  # the newest; it says under which waivers
        assert latest["isv-selftest"]["waivers_digest"] == "sha256:" + hashlib.sha256(WAIVERS.encode()).hexdigest()


def test_a_finished_scans_renderings_are_served_with_their_media_types(server, rejected_report):
    token = make_token(server, "renderings", "submit,read")
    data, report_json = rejected_report
    digest = upload(server, token, data)
    with client(server, token) as c:
        scan = c.post("/v1/scans", json={"artifact": "sha256:" + digest, "filename": "junk.ova"}).json()
        finish(server, scan["id"], report_json, "rejected")
        store = server.store()
        try:
            for fmt in ("sarif", "junit", "html", "text"):
                store.put_rendering(scan["id"], fmt, f"<{fmt} rendering>")
        finally:
            store.close()
        for fmt, media in (("sarif", "application/sarif+json"), ("junit", "application/xml"),
                           ("html", "text/html"), ("text", "text/plain")):
            r = c.get(f"/v1/scans/{scan['id']}/report", params={"format": fmt})
            assert r.status_code == 200 and r.headers["content-type"].startswith(media)
            assert r.text == f"<{fmt} rendering>"


# -- metadata --------------------------------------------------------------------------------------

def test_metadata_names_the_rules_and_honours_its_etag(server, acme):
    with client(server, acme) as c:
        r = c.get("/v1/metadata")
        meta = r.json()
        assert meta["ruleset_digest"].startswith("sha256:") and meta["catalog"] and "json" in meta["formats"]
        assert "default" in {p["name"] for p in meta["profiles"]}
        from certify import __version__
        assert meta["version"] == __version__
        etag = r.headers["etag"]
        again = c.get("/v1/metadata", headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""
        assert c.get("/v1/metadata", headers={"If-None-Match": '"other"'}).status_code == 200


def test_openapi_describes_every_endpoint_with_problems_and_bearer_auth(server):
    spec = httpx.get(server.url + "/openapi.json").json()
    assert {"/v1/blobs/sha256:{hex}", "/v1/scans", "/v1/scans/{scan_id}", "/v1/scans/{scan_id}/report",
            "/v1/scans/{scan_id}/certificate", "/v1/scans/{scan_id}/cancel", "/v1/artifacts/sha256:{hex}",
            "/v1/metadata", "/healthz", "/readyz"} <= set(spec["paths"])
    assert any(s.get("scheme") == "bearer" for s in spec["components"]["securitySchemes"].values())
    post = spec["paths"]["/v1/scans"]["post"]
    assert {"200", "202", "401", "403", "422"} <= set(post["responses"])
    assert PROBLEM in post["responses"]["422"]["content"]
    assert post["security"]


def test_schemathesis_finds_nothing_against_the_served_openapi(server):
    token = make_token(server, "fuzzed", "submit,read")
    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    failures = []
    for result in schema.get_all_operations():
        operation = result.ok()
        # Refusals no schema can express, so "schema-valid data is accepted" is left out for these
        # alone (every other check still runs): a generated upload body does not hash to the digest
        # generated for its path; a generated scan names an artifact this tenant never uploaded or a
        # waivers text that is not a waivers document; a generated list cursor is not one handed out.
        excluded = [positive_data_acceptance] if operation.label in (
            "PUT /v1/blobs/sha256:{hex}", "POST /v1/scans", "GET /v1/scans") else []

        @given(case=operation.as_strategy())
        @settings(max_examples=20, deadline=None, derandomize=True, database=None,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        def exercise(case):  # noqa: ANN001
            case.call_and_validate(headers=auth(token), excluded_checks=excluded)

        try:
            exercise()
        except Exception as exc:  # noqa: BLE001 - every operation's findings, reported together
            failures.append(f"{operation.label}: {str(exc)[:2000]}")
    assert not failures, "\n\n".join(failures)


# -- the server process ----------------------------------------------------------------------------

def test_serve_refuses_a_port_in_use_and_an_unusable_data_dir(server, tmp_path):
    port = server.url.rsplit(":", 1)[1]
    done = subprocess.run([sys.executable, "-m", "certify", "serve", "--data", str(tmp_path / "d"), "--port", port,
                           "--workers", "0"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "in use" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    done = subprocess.run([sys.executable, "-m", "certify", "serve", "--data", str(blocker / "data"), "--port", "0",
                           "--workers", "0"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and str(blocker) in done.stderr and "Traceback" not in done.stderr
    for flags in (["--port", "70000"], ["--workers", "-1"], ["--max-upload", "lots"], ["--scan-timeout", "soon"]):
        done = subprocess.run([sys.executable, "-m", "certify", "serve", *flags], capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 2 and flags[0] in done.stderr and "Traceback" not in done.stderr


def test_the_supervisor_restarts_a_worker_that_dies_and_stops_them_all(tmp_path):
    def sleeper(settings, worker_id):  # a real process standing in for the worker module's command
        return [sys.executable, "-c", "import sys, time; print(sys.argv[1], flush=True); time.sleep(600)", worker_id]

    messages: list[str] = []
    supervisor = Supervisor(ServiceSettings(data_dir=tmp_path), 2, log=messages.append, command=sleeper)
    supervisor.start()
    try:
        first = {slot: p.pid for slot, p in supervisor.processes.items()}
        assert len(first) == 2
        os.kill(first[1], signal.SIGKILL)
        restarted = threading.Event()
        for _ in range(300):
            if supervisor.processes[1].pid != first[1] and supervisor.processes[1].poll() is None:
                restarted.set()
                break
            threading.Event().wait(0.1)
        assert restarted.is_set(), messages
        assert supervisor.processes[0].pid == first[0]
        assert any("exited with -9" in m for m in messages)
    finally:
        supervisor.stop()
    assert all(p.poll() is not None for p in supervisor.processes.values())


def test_restart_with_the_same_data_dir_keeps_everything(tmp_path):
    served = start_server(tmp_path / "data")
    token = make_token(served, "acme", "submit,read")
    digest = upload(served, token, blob_of("restart")[0])
    with client(served, token) as c:
        scan = c.post("/v1/scans", json={"artifact": "sha256:" + digest, "filename": "a.ova"}).json()
    assert stop_server(served) == 0
    served = start_server(tmp_path / "data")
    try:
        with client(served, token) as c:
            assert c.get(f"/v1/scans/{scan['id']}").json()["state"] == "queued"
            assert c.head(f"/v1/blobs/sha256:{digest}").status_code == 200
    finally:
        assert stop_server(served, signal.SIGINT) == 0


# -- certify submit --------------------------------------------------------------------------------

def run_submit(server: Served, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "certify", "submit", "--server", server.url, *args],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "CERTIFY_TOKEN": ""})


def test_submit_uploads_once_and_submits(server, tmp_path):
    token = make_token(server, "submitter", "submit,read")
    appliance = tmp_path / "vendor.ova"
    appliance.write_bytes(b"appliance bytes\n" * 1000)
    digest = hashlib.sha256(appliance.read_bytes()).hexdigest()
    first = run_submit(server, str(appliance), "--token", token, "--format", "json")
    assert first.returncode == 0, first.stderr
    scan = json.loads(first.stdout)
    assert scan["artifact"] == "sha256:" + digest and scan["state"] == "queued"
    assert "uploaded" in first.stderr
    second = run_submit(server, str(appliance), "--token", token, "--format", "json")
    assert second.returncode == 0 and "already holds" in second.stderr
    assert json.loads(second.stdout)["id"] == scan["id"]


def test_submit_wait_exits_like_scan_on_the_verdict(server, tmp_path, rejected_report):
    token = make_token(server, "waiter", "submit,read")
    data, report_json = rejected_report
    appliance = tmp_path / "junk.ova"
    appliance.write_bytes(data)
    waiting = subprocess.Popen([sys.executable, "-m", "certify", "submit", "--server", server.url, str(appliance),
                                "--token", token, "--wait"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    store = server.store()
    try:
        while True:  # the submitted scan, once it is in the queue
            rows, _ = store.list_scans("waiter")
            if rows:
                break
            assert waiting.poll() is None, waiting.stderr.read()
            threading.Event().wait(0.2)
    finally:
        store.close()
    finish(server, rows[0].id, report_json, "rejected")
    out, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 1, err
    assert "rejected" in out and "queued" in err


def test_submit_errors_are_one_line(server, tmp_path):
    appliance = tmp_path / "a.ova"
    appliance.write_bytes(b"x")
    bad = run_submit(server, str(appliance), "--token", "cfy_" + "B" * 43)
    assert bad.returncode == 2 and "401" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    reader = make_token(server, "acme", "read")
    scope = run_submit(server, str(appliance), "--token", reader)
    assert scope.returncode == 2 and "403" in scope.stderr
    missing = run_submit(server, str(tmp_path / "none.ova"), "--token", reader)
    assert missing.returncode == 2 and "none.ova" in missing.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    down = subprocess.run([sys.executable, "-m", "certify", "submit", "--server", f"http://127.0.0.1:{closed}",
                           str(appliance), "--token", reader], capture_output=True, text=True, timeout=60)
    assert down.returncode == 3 and "refused" in down.stderr.lower() and "Traceback" not in down.stderr
    no_token = run_submit(server, str(appliance))
    assert no_token.returncode == 2 and "token" in no_token.stderr


# -- PostgreSQL smoke ------------------------------------------------------------------------------

def test_smoke_on_postgresql(postgres_server, tmp_path):
    served = start_server(tmp_path / "data", db_url=postgres_server.new_database())
    try:
        token = make_token(served, "acme", "submit,read")
        digest = upload(served, token, blob_of("postgres")[0])
        body = {"artifact": "sha256:" + digest, "filename": "a.ova"}
        with client(served, token) as c:
            assert c.get("/readyz").status_code == 200
            with ThreadPoolExecutor(10) as pool:
                answers = list(pool.map(lambda _: client(served, token).post("/v1/scans", json=body), range(10)))
            assert len({r.json()["id"] for r in answers}) == 1
            scan_id = answers[0].json()["id"]
            assert c.get(f"/v1/scans/{scan_id}/report").status_code == 202
            assert c.post(f"/v1/scans/{scan_id}/cancel").json()["state"] == "cancelled"
    finally:
        assert stop_server(served) == 0


# -- in process: faults a served process cannot be made to show -----------------------------------

def _app_at(data: Path):
    from certify.service import db
    from certify.service.api import create_app

    settings = ServiceSettings(data_dir=data)
    db.upgrade(settings.database_url)
    return create_app(settings)


def test_readyz_is_503_when_the_data_directory_is_gone(tmp_path):
    from fastapi.testclient import TestClient

    app = _app_at(tmp_path / "data")
    with TestClient(app) as c:
        assert c.get("/readyz").status_code == 200
        (tmp_path / "data").rename(tmp_path / "moved")
        (tmp_path / "data").write_text("a file where the data directory was")
        assert_problem(c.get("/readyz"), 503)
        assert c.get("/healthz").status_code == 200


def test_an_unexpected_error_is_a_500_problem_that_tells_nothing_of_its_insides(tmp_path):
    from fastapi.testclient import TestClient

    app = _app_at(tmp_path / "data")

    @app.get("/test-fault")
    def fault():
        raise RuntimeError("secret internal state")

    with TestClient(app, raise_server_exceptions=False) as c:
        body = assert_problem(c.get("/test-fault"), 500, "RuntimeError")
    assert "secret" not in body["detail"]
