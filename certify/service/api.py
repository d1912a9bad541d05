"""The HTTP API of the certification service (FastAPI), under ``/v1``.

Sync or async: the store is synchronous SQLAlchemy, so every endpoint that
only talks to the store is a plain ``def`` and FastAPI runs it in its
threadpool; the event loop never waits on the database. The one ``async``
endpoint is the blob upload, which must read ``request.stream()`` chunk by
chunk; its file writes and store calls go to the threadpool too.

Authentication happens before routing and body parsing (a middleware), so an
unauthenticated request gets 401 and nothing else, whatever its body or path;
scopes are checked per endpoint (403), and another tenant's ids are simply not
found (404). Every error is ``application/problem+json`` (RFC 9457).
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from fastapi import Depends, FastAPI, Header, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from certify import __version__
from certify.catalog import installed_ruleset_digest
from certify.errors import UsageError
from certify.plugins.manager import load_registry
from certify.policy.profile import load_profile, shipped_names
from certify.policy.waivers import parse_waivers
from certify.service import db, tokens
from certify.service.blobs import (BlobError, BlobStore, BlobTooLarge, DigestMismatch, InsufficientStorage,
                                   InvalidDigest, check_digest)
from certify.service.doorbell import Doorbell
from certify.service.settings import ServiceSettings
from certify.service.store import (MAX_LIST_LIMIT, IdempotencyConflict, InvalidCursor, ScanRequest,
                                   ScanRow, Store, StoreError)

PROBLEM = "application/problem+json"
# Problem types name the fault for programs (RFC 9457); a URN, as there is no page to dereference.
PROBLEM_BASE = "urn:certify:problem:"
# Every body but a blob's is parsed into memory: JSON requests are capped well below anything harmful.
MAX_REQUEST_BODY = 1 << 20
RETRY_AFTER_SECONDS = 5
MAX_WAIVERS_BYTES = 256 * 1024
_BLOB_PATH = re.compile(r"/v1/blobs/[^/]*")
MEDIA_TYPES = {
    "json": "application/json",
    "sarif": "application/sarif+json",
    "junit": "application/xml",
    "html": "text/html; charset=utf-8",
    "text": "text/plain; charset=utf-8",
}
DIGEST_PATTERN = r"^sha256:[0-9a-f]{64}$"
HEX_PATTERN = r"^[0-9a-f]{64}$"


# -- problems --------------------------------------------------------------------------------------

class Problem(Exception):
    """An error answered as ``application/problem+json``."""

    def __init__(self, status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.headers = headers or {}


class ProblemModel(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    instance: str


def problem_response(request_path: str, status: int, title: str, detail: str,
                     headers: dict[str, str] | None = None) -> JSONResponse:
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    body = {"type": PROBLEM_BASE + slug, "title": title, "status": status, "detail": detail, "instance": request_path}
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    described = {400: "bad request", 401: "no valid bearer token", 403: "the token lacks the scope",
                 404: "not found (or another tenant's)", 409: "the scan has no report", 413: "upload too large",
                 422: "invalid request", 507: "not enough storage", 503: "not ready"}
    return {s: {"model": ProblemModel, "description": described.get(s, "problem"),
                "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/ProblemModel"}}}} for s in statuses}


# -- response models -------------------------------------------------------------------------------

class ScanOut(BaseModel):
    id: str
    artifact: str
    filename: str
    profile: str = Field(description="the profile's name (part of the natural key: profiles with the same "
                                     "content are still distinct scans)")
    profile_digest: str = Field(description="the profile's own digest, as in the report and /v1/metadata")
    waivers_digest: str | None = Field(description="sha256:<hex> of the waivers document the scan was submitted "
                                                   "with (part of the natural key), null for none")
    ruleset_digest: str
    certify_version: str
    state: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    stage: str | None
    attempt: int
    max_attempts: int
    priority: int
    labels: dict[str, Any]
    verdict: Literal["pass", "fail", "rejected", "error"] | None
    reevaluated: bool
    reevaluation_of: str | None = Field(default=None, description="the scan this one judged again from stored "
                                                                   "facts under a newer ruleset (certify reevaluate)")
    cancel_requested: bool
    failure_reason: str | None
    failure_message: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class ScanPage(BaseModel):
    items: list[ScanOut]
    next_cursor: str | None


class BlobOut(BaseModel):
    digest: str
    size: int
    created: bool


class ArtifactVerdictOut(BaseModel):
    profile: str
    profile_digest: str
    waivers_digest: str | None = Field(description="sha256:<hex> of the waivers document the verdict was reached "
                                                   "under, null for none")
    verdict: Literal["pass", "fail", "rejected", "error"]
    scan_id: str
    ruleset_digest: str
    certify_version: str
    finished_at: datetime


class ArtifactOut(BaseModel):
    artifact: str
    verdicts: list[ArtifactVerdictOut]


class ProfileOut(BaseModel):
    name: str
    description: str
    digest: str


class MetadataOut(BaseModel):
    version: str
    ruleset_digest: str
    profiles: list[ProfileOut]
    catalog: list[dict[str, Any]]
    formats: list[str]


class HealthOut(BaseModel):
    status: str


class ScanSubmission(BaseModel):
    model_config = ConfigDict(extra="forbid")

    artifact: str = Field(pattern=DIGEST_PATTERN, description="sha256:<hex> of a blob this tenant uploaded")
    filename: str = Field(min_length=1, max_length=255)
    profile: str = Field(default="default", min_length=1, max_length=200)
    waivers: str | None = Field(default=None, max_length=MAX_WAIVERS_BYTES,
                                description="a waivers YAML document; part of the natural key (its sha256): "
                                            "other waivers are another scan, the same waivers the same scan")
    priority: int = Field(default=0, ge=-1000, le=1000)
    labels: dict[str, str] = Field(default_factory=dict, max_length=50)
    force: bool = False


def scan_out(row: ScanRow) -> ScanOut:
    return ScanOut(
        id=row.id, artifact="sha256:" + row.artifact_sha256, filename=row.filename, profile=row.profile_name,
        profile_digest="sha256:" + row.profile_digest,
        waivers_digest=_prefixed_or_none(row.waivers_digest), ruleset_digest="sha256:" + row.ruleset_digest,
        certify_version=row.certify_version, state=row.state, stage=row.stage, attempt=row.attempt,
        max_attempts=row.max_attempts, priority=row.priority, labels=row.labels, verdict=row.verdict,
        reevaluated=row.reevaluated, reevaluation_of=row.reevaluation_of, cancel_requested=row.cancel_requested, failure_reason=row.failure_reason,
        failure_message=row.failure_message, created_at=row.created_at, started_at=row.started_at,
        finished_at=row.finished_at)


def _hex_path() -> Any:
    return Path(pattern=HEX_PATTERN, description="the sha256 of the bytes: 64 lowercase hex digits")


def _prefixed_or_none(waivers_digest: str) -> str | None:
    return "sha256:" + waivers_digest if waivers_digest else None


def _bare(digest: str) -> str:
    return digest.removeprefix("sha256:")


# -- the app ---------------------------------------------------------------------------------------

class _Rules:
    """What is installed here, loaded once: check catalog, shipped profiles, their digest, report formats."""

    def __init__(self) -> None:
        registry = load_registry()
        self.catalog = [c.as_dict() for c in registry.checks.values()]
        self.profiles = {name: load_profile(name) for name in shipped_names()}
        self.ruleset_digest = installed_ruleset_digest(registry)
        self.formats = sorted(set(registry.reporters) | {"json"})


def create_app(settings: ServiceSettings) -> FastAPI:
    """The API over the store and blob directory that ``settings`` name (the database is not migrated here)."""
    store = Store(db.make_engine(settings.database_url))
    blob_store = BlobStore(settings.data_dir, reserve=settings.reserve_bytes)
    doorbell = Doorbell(settings.data_dir)
    rules = _Rules()
    bearer = HTTPBearer(auto_error=False, description="a tenant's API token (certify tokens create)")

    app = FastAPI(title="certify", version=__version__,
                  description="Certification service: upload an appliance, submit a scan, read its verdict.")
    app.state.store = store
    app.state.settings = settings
    app.state.ruleset_digest = rules.ruleset_digest

    # -- errors -----------------------------------------------------------------------------------

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(request.url.path, exc.status, exc.title, exc.detail, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        titles = {404: "Not found", 405: "Method not allowed"}
        detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no resource at {request.url.path[:200]}"
        if exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path[:200]}"
        return problem_response(request.url.path, exc.status_code, titles.get(exc.status_code, "HTTP error"),
                                detail, dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return problem_response(request.url.path, 400, "Malformed JSON", "the request body is not valid JSON")
        bad_digest = next((e for e in errors if tuple(e.get("loc", ())) == ("path", "hex")), None)
        if bad_digest is not None:
            return problem_response(request.url.path, 400, "Invalid digest",
                                    f"{str(bad_digest.get('input'))[:80]!r} is not a sha256 digest "
                                    "(64 lowercase hex digits)")
        parts = []
        for e in errors[:5]:
            where = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "request"
            parts.append(f"{where}: {e.get('msg', 'invalid')}")
        return problem_response(request.url.path, 422, "Invalid request", "; ".join(parts))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        # A bug still answers in the API's one error format, and says nothing of its insides.
        return problem_response(request.url.path, 500, "Internal error",
                                f"the server failed on this request ({type(exc).__name__})")

    @app.exception_handler(StoreError)
    async def _store_error(request: Request, exc: StoreError) -> JSONResponse:
        return problem_response(request.url.path, 503, "Service unavailable", str(exc), {"Retry-After": "5"})

    @app.exception_handler(sa.exc.OperationalError)
    async def _db_down(request: Request, exc: sa.exc.OperationalError) -> JSONResponse:
        return problem_response(request.url.path, 503, "Service unavailable", "the database cannot be reached",
                                {"Retry-After": "5"})

    # -- request size -----------------------------------------------------------------------------

    @app.middleware("http")
    async def _cap_body(request: Request, call_next: Callable) -> Response:
        # Registered before the authentication middleware, so it runs after it (Starlette runs the
        # last one added first): an unauthenticated request still only ever gets 401.
        if request.method in ("POST", "PUT", "PATCH") and not _BLOB_PATH.fullmatch(request.url.path):
            declared = request.headers.get("content-length")
            if declared is not None and declared.strip().isdigit() and int(declared) > MAX_REQUEST_BODY:
                return problem_response(request.url.path, 413, "Request too large",
                                        f"{declared} bytes: a request body here is at most {MAX_REQUEST_BODY}")
            if declared is None:
                body = bytearray()
                async for chunk in request.stream():
                    body += chunk
                    if len(body) > MAX_REQUEST_BODY:
                        return problem_response(request.url.path, 413, "Request too large",
                                                f"over {MAX_REQUEST_BODY} bytes: a request body here is at most that")
                request._body = bytes(body)  # read once, handed on to the endpoint
        return await call_next(request)

    # -- authentication ---------------------------------------------------------------------------

    @app.middleware("http")
    async def _authenticate(request: Request, call_next: Callable) -> Response:
        # Before routing and body parsing: whatever else is wrong with the request, no token means 401.
        if request.url.path.startswith("/v1/") or request.url.path == "/v1":
            header = request.headers.get("authorization", "")
            scheme, _, secret = header.partition(" ")
            principal = None
            if scheme.lower() == "bearer" and secret.strip():
                principal = await run_in_threadpool(tokens.verify, store, secret.strip())
            if principal is None:
                detail = ("a valid bearer token is required" if header
                          else "no bearer token: send 'Authorization: Bearer <token>'")
                return problem_response(request.url.path, 401, "Unauthorized", detail,
                                        {"WWW-Authenticate": 'Bearer realm="certify"'})
            request.state.principal = principal
        return await call_next(request)

    def scope(*names: str) -> Callable[..., tokens.Principal]:
        def dependency(request: Request,
                       _credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> tokens.Principal:
            principal: tokens.Principal = request.state.principal
            if not any(principal.allows(name) for name in names):
                raise Problem(403, "Forbidden", f"this token lacks the {' or '.join(repr(n) for n in names)} scope")
            return principal
        return dependency

    submitter = Depends(scope("submit"))
    reader = Depends(scope("read"))
    # A submitter asks whether to upload at all before it uploads: HEAD of a blob serves either scope.
    uploader_or_reader = Depends(scope("submit", "read"))

    def scan_or_404(tenant: str, scan_id: str) -> ScanRow:
        row = store.get_scan(tenant, scan_id)
        if row is None:
            raise Problem(404, "Not found", f"no scan {scan_id[:80]!r}")
        return row

    # -- blobs --------------------------------------------------------------------------------------

    def blob_digest(raw: str) -> str:
        try:
            return check_digest(raw)
        except InvalidDigest as exc:
            raise Problem(400, "Invalid digest", str(exc)) from None

    @app.put("/v1/blobs/sha256:{hex}", status_code=201, response_model=BlobOut,
             responses={200: {"model": BlobOut, "description": "the tenant already had this blob"},
                        **_problems(400, 403, 411, 413, 507)},
             openapi_extra={"requestBody": {"required": True,
                                            "content": {"application/octet-stream": {"schema": {"type": "string",
                                                                                                "format": "binary"}}}}})
    async def put_blob(request: Request, response: Response, hex: str = _hex_path(),
                       principal: tokens.Principal = submitter) -> BlobOut:
        """Upload the bytes of an artifact, streamed; they must hash to the digest in the path."""
        digest = blob_digest(hex)
        declared = _content_length(request.headers.get("content-length"))
        if declared is None and "chunked" not in request.headers.get("transfer-encoding", "").lower():
            raise Problem(411, "Length required", "send Content-Length (or a chunked body)")
        had = await run_in_threadpool(store.get_blob, principal.tenant, digest)
        try:
            writer = await run_in_threadpool(blob_store.writer, digest, settings.max_upload, declared)
        except BlobError as exc:
            raise _blob_problem(exc) from None
        try:
            with writer:
                async for chunk in request.stream():
                    if chunk:
                        await run_in_threadpool(writer.write, chunk)
                stored = await run_in_threadpool(writer.commit)
        except BlobError as exc:
            raise _blob_problem(exc) from None
        except ClientDisconnect:
            raise Problem(400, "Truncated upload",
                          f"blob sha256:{digest}: the client went away after {writer.size} bytes") from None
        await run_in_threadpool(store.record_blob, principal.tenant, digest, stored.size,
                                request.headers.get("x-filename"))
        if had is not None:
            response.status_code = 200
        else:
            response.headers["Location"] = f"/v1/blobs/sha256:{digest}"
        return BlobOut(digest="sha256:" + digest, size=stored.size, created=had is None)

    @app.head("/v1/blobs/sha256:{hex}", responses=_problems(400, 403, 404))
    def head_blob(hex: str = _hex_path(), principal: tokens.Principal = uploader_or_reader) -> Response:
        """Whether this tenant has uploaded the blob (200 with its size) or not (404)."""
        digest = blob_digest(hex)
        row = store.get_blob(principal.tenant, digest)
        if row is None:
            raise Problem(404, "Not found", f"blob sha256:{digest} has not been uploaded by this tenant")
        return Response(status_code=200, headers={"Content-Length": str(row.size),
                                                  "Content-Type": "application/octet-stream"})

    # -- scans --------------------------------------------------------------------------------------

    @app.post("/v1/scans", status_code=202, response_model=ScanOut,
              responses={200: {"model": ScanOut, "description": "the existing scan of this natural key"},
                         **_problems(400, 403, 422)})
    def submit_scan(body: ScanSubmission, response: Response, principal: tokens.Principal = submitter,
                    idempotency_key: str | None = Header(default=None, max_length=255)) -> ScanOut:
        """Queue a scan of an uploaded artifact under a profile (or return the existing one)."""
        profile = rules.profiles.get(body.profile)
        if profile is None:
            raise Problem(422, "Unknown profile",
                          f"profile {body.profile[:80]!r} is not one of {', '.join(sorted(rules.profiles))}")
        if body.waivers is not None:
            try:
                parse_waivers(body.waivers, "waivers")
            except UsageError as exc:
                raise Problem(422, "Invalid waivers", str(exc)) from None
        artifact = _bare(body.artifact)
        if store.get_blob(principal.tenant, artifact) is None:
            raise Problem(422, "Unknown artifact",
                          f"artifact {body.artifact} has not been uploaded by this tenant "
                          f"(PUT /v1/blobs/{body.artifact} first)")
        if idempotency_key is not None and not idempotency_key.strip():
            raise Problem(422, "Invalid request", "Idempotency-Key: empty")
        request = ScanRequest(
            tenant=principal.tenant, artifact_sha256=artifact, filename=body.filename, profile_name=body.profile,
            profile_digest=_bare(profile.digest), ruleset_digest=_bare(rules.ruleset_digest),
            certify_version=__version__, waivers=body.waivers, priority=body.priority, labels=body.labels,
            max_attempts=settings.max_attempts)
        try:
            row, created = store.submit_scan(request, force=body.force, idempotency_key=idempotency_key,
                                             request_body=body.model_dump())
        except IdempotencyConflict as exc:
            raise Problem(422, "Idempotency key reused", str(exc)) from None
        except UsageError as exc:
            raise Problem(422, "Invalid request", str(exc)) from None
        if created:
            doorbell.ring()
        response.status_code = 202 if created else 200
        response.headers["Location"] = f"/v1/scans/{row.id}"
        return scan_out(row)

    @app.get("/v1/scans", response_model=ScanPage, responses=_problems(400, 403, 422))
    def list_scans(principal: tokens.Principal = reader,
                   state: Literal["queued", "running", "succeeded", "failed", "cancelled"] | None = None,
                   verdict: Literal["pass", "fail", "rejected", "error"] | None = None,
                   cursor: str | None = Query(default=None, max_length=200, pattern=r"^[A-Za-z0-9_-]+$",
                                              description="next_cursor of the previous page, as handed out"),
                   limit: int = Query(default=50, ge=1, le=MAX_LIST_LIMIT)) -> ScanPage:
        """The tenant's scans, newest first; follow ``next_cursor`` for the next page."""
        try:
            rows, following = store.list_scans(principal.tenant, state, verdict, cursor, limit)
        except InvalidCursor as exc:
            raise Problem(400, "Invalid cursor", str(exc)) from None
        return ScanPage(items=[scan_out(r) for r in rows], next_cursor=following)

    @app.get("/v1/scans/{scan_id}", response_model=ScanOut, responses=_problems(403, 404))
    def get_scan(scan_id: str = Path(max_length=64), principal: tokens.Principal = reader) -> ScanOut:
        """The scan's state, stage, attempt, timestamps and (once succeeded) verdict."""
        return scan_out(scan_or_404(principal.tenant, scan_id))

    @app.get("/v1/scans/{scan_id}/report",
             responses={200: {"description": "the report in the format asked",
                              "content": {m.split(";")[0]: {} for m in MEDIA_TYPES.values()}},
                        202: {"model": ScanOut, "description": "not finished yet: retry after Retry-After seconds"},
                        **_problems(403, 404, 409, 422)})
    def get_report(scan_id: str = Path(max_length=64), principal: tokens.Principal = reader,
                   format: str = Query(default="json", max_length=40,
                                       description="json, sarif, junit, html, text (the installed reporters)")
                   ) -> Response:
        """The scan's report: 202 while it is queued or running, 409 when it ended without one."""
        if format not in rules.formats:
            raise Problem(422, "Unknown format", f"format {format[:40]!r} is not one of {', '.join(rules.formats)}")
        row = scan_or_404(principal.tenant, scan_id)
        unfinished = _unfinished(row)
        if unfinished is not None:
            return unfinished
        if format == "json":
            body = store.get_report(principal.tenant, scan_id)
        else:
            body = store.get_rendering(principal.tenant, scan_id, format)
        if body is None:
            raise Problem(404, "Not found", f"scan {scan_id}: no {format} report was stored")
        return Response(body, media_type=MEDIA_TYPES.get(format, "text/plain; charset=utf-8"))

    @app.get("/v1/scans/{scan_id}/certificate",
             responses={200: {"description": "the signed certificate (JSON)", "content": {"application/json": {}}},
                        202: {"model": ScanOut, "description": "not finished yet"},
                        **_problems(403, 404, 409)})
    def get_certificate(scan_id: str = Path(max_length=64), principal: tokens.Principal = reader) -> Response:
        """The signed certificate of a passed scan, when the server holds a signing key."""
        row = scan_or_404(principal.tenant, scan_id)
        unfinished = _unfinished(row)
        if unfinished is not None:
            return unfinished
        body = store.get_rendering(principal.tenant, scan_id, "certificate")
        if body is None:
            why = "its verdict is not pass" if row.verdict != "pass" else "the server holds no signing key"
            raise Problem(404, "No certificate", f"scan {scan_id} has no certificate: {why}")
        return Response(body, media_type="application/json")

    @app.post("/v1/scans/{scan_id}/cancel", response_model=ScanOut, responses=_problems(403, 404))
    def cancel_scan(scan_id: str = Path(max_length=64), principal: tokens.Principal = submitter) -> ScanOut:
        """Cancel a queued scan at once; a running one is stopped by its worker."""
        row = store.request_cancel(principal.tenant, scan_id)
        if row is None:
            raise Problem(404, "Not found", f"no scan {scan_id[:80]!r}")
        return scan_out(row)

    # -- artifacts, metadata, health ----------------------------------------------------------------

    @app.get("/v1/artifacts/sha256:{hex}", response_model=ArtifactOut, responses=_problems(400, 403))
    def get_artifact(hex: str = _hex_path(), principal: tokens.Principal = reader) -> ArtifactOut:
        """The latest verdict of this artifact under each profile the tenant scanned it with."""
        digest = blob_digest(hex)
        found = store.latest_verdicts(principal.tenant, digest)
        return ArtifactOut(artifact="sha256:" + digest, verdicts=[ArtifactVerdictOut(
            profile=v.profile_name, profile_digest="sha256:" + v.profile_digest, verdict=v.verdict,
            scan_id=v.scan_id, ruleset_digest="sha256:" + v.ruleset_digest, certify_version=v.certify_version,
            finished_at=v.finished_at, waivers_digest=_prefixed_or_none(v.waivers_digest)) for v in found])

    def openapi() -> dict[str, Any]:
        # The installed profiles and reporters are the only names a request may use: publish them as enums.
        if app.openapi_schema is None:
            spec = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            field = spec["components"]["schemas"]["ScanSubmission"]["properties"]["profile"]
            field["enum"] = sorted(rules.profiles)
            problem = {PROBLEM: {"schema": {"$ref": "#/components/schemas/ProblemModel"}}}
            for path, operations in spec["paths"].items():
                for operation in operations.values():
                    responses = operation.setdefault("responses", {})
                    if path.startswith("/v1/"):
                        responses["401"] = {"description": "no valid bearer token",
                                            "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
                                            "content": problem}
                        responses.setdefault("422", {"description": "invalid request", "content": problem})
                    for status, answer in responses.items():
                        if status.isdigit() and int(status) >= 400:  # errors are only ever problem+json
                            answer["content"] = problem
            if "HTTPValidationError" not in json.dumps(spec["paths"]):  # FastAPI's own, replaced above
                for name in ("HTTPValidationError", "ValidationError"):
                    spec["components"]["schemas"].pop(name, None)
            for parameter in spec["paths"]["/v1/scans/{scan_id}/report"]["get"]["parameters"]:
                if parameter["name"] == "format":
                    parameter["schema"]["enum"] = rules.formats
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    etag = f'"{_bare(rules.ruleset_digest)[:32]}-{__version__}"'

    @app.get("/v1/metadata", response_model=MetadataOut,
             responses={304: {"description": "unchanged since the ETag given"}, **_problems(403)})
    def metadata(request: Request, response: Response, principal: tokens.Principal = reader) -> Any:
        """Version, check catalog, profiles and the ruleset digest (which changes when any rule does)."""
        if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
            return Response(status_code=304, headers={"ETag": etag})
        response.headers["ETag"] = etag
        return MetadataOut(
            version=__version__, ruleset_digest=rules.ruleset_digest, catalog=rules.catalog, formats=rules.formats,
            profiles=[ProfileOut(name=p.name, description=p.description, digest=p.digest)
                      for p in rules.profiles.values()])

    @app.get("/healthz", response_model=HealthOut)
    def healthz() -> HealthOut:
        """The process is alive."""
        return HealthOut(status="ok")

    @app.get("/readyz", response_model=HealthOut, responses=_problems(503))
    def readyz() -> HealthOut:
        """The database answers and the blob directory takes writes."""
        try:
            with store.engine.connect() as c:
                c.execute(sa.select(sa.literal(1)))
        except sa.exc.SQLAlchemyError:
            raise Problem(503, "Not ready", "the database cannot be reached") from None
        try:
            blob_store.data_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=blob_store.data_dir, prefix=".ready-"):
                pass
        except OSError as exc:
            raise Problem(503, "Not ready", f"the data directory {blob_store.data_dir} cannot be written: "
                                            f"{exc.strerror or exc}") from None
        return HealthOut(status="ready")

    return app


def _unfinished(row: ScanRow) -> Response | None:
    """The answer for a scan without a report yet (202) or ever (409); None when it has one."""
    if row.state in ("queued", "running"):
        return JSONResponse(scan_out(row).model_dump(mode="json"), status_code=202,
                            headers={"Retry-After": str(RETRY_AFTER_SECONDS), "Location": f"/v1/scans/{row.id}"})
    if row.state != "succeeded":
        reason = f" ({row.failure_reason})" if row.failure_reason else ""
        raise Problem(409, "No report", f"scan {row.id} ended {row.state}{reason} without a report")
    return None


def _content_length(value: str | None) -> int | None:
    if value is None:
        return None
    if not value.strip().isdigit():
        raise Problem(400, "Invalid Content-Length", f"Content-Length {value[:40]!r} is not a byte count")
    return int(value)


def _blob_problem(exc: BlobError) -> Problem:
    if isinstance(exc, BlobTooLarge):
        return Problem(413, "Upload too large", str(exc))
    if isinstance(exc, InsufficientStorage):
        return Problem(507, "Insufficient storage", str(exc))
    if isinstance(exc, (DigestMismatch, InvalidDigest)):
        return Problem(400, "Digest mismatch" if isinstance(exc, DigestMismatch) else "Invalid digest", str(exc))
    return Problem(500, "Upload failed", str(exc))

