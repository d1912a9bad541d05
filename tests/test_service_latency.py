"""What keeps the service's own time per job small, each shown working (the figures are the benchmark's):

- the doorbell: a submission wakes an idle worker instead of leaving the scan to its next poll;
- a scan child forked ahead by an idle worker (``WarmChild``): no interpreter to start per scan;
- Nagle off on the API's connections: small responses on a kept-alive connection are not held back.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import threading
from pathlib import Path

import pytest

from certify.service import db, worker as worker_module
from certify.service.doorbell import Doorbell
from certify.service.serve import bind
from certify.service.settings import ServiceSettings
from proctools import alive, children_of, cmdline, wait_for
from test_service_worker import VNC_VMX, InThreadWorker, sqlite_service, workers  # noqa: F401 - fixtures


class Waiter:
    """``Doorbell.wait`` in a thread: ``rung`` is what it returned."""

    def __init__(self, bell: Doorbell, timeout: float) -> None:
        self.rung: bool | None = None
        self.thread = threading.Thread(target=self._wait, args=(bell, timeout), daemon=True)
        self.listening = threading.Event()
        self.thread.start()

    def _wait(self, bell: Doorbell, timeout: float) -> None:
        bell._open()
        self.listening.set()
        self.rung = bell.wait(timeout)


# -- the doorbell --------------------------------------------------------------------------------


def test_a_ring_wakes_a_waiting_worker(tmp_path):
    listener, api = Doorbell(tmp_path), Doorbell(tmp_path)
    waiter = Waiter(listener, timeout=600)
    assert waiter.listening.wait(10)
    api.ring()
    waiter.thread.join(timeout=60)  # a missed ring would keep it for 600 s
    assert waiter.rung is True
    listener.close()


def test_without_a_ring_a_wait_is_a_poll_interval(tmp_path):
    bell = Doorbell(tmp_path)
    assert bell.wait(0.05) is False
    bell.ring()
    assert bell.wait(0.05) is True
    assert bell.wait(0.05) is False  # one look answers every ring so far
    bell.close()


def test_rings_nobody_answers_never_block_nor_fail(tmp_path):
    bell = Doorbell(tmp_path)
    bell.ring()  # no pipe yet
    assert bell.make()
    bell.ring()  # a pipe, no worker listening
    listener = Doorbell(tmp_path)
    listener._open()
    for _ in range(70_000):  # more than a pipe holds
        bell.ring()
    assert listener.wait(0) is True
    listener.close()


def test_a_symbolic_link_at_the_doorbell_path_is_not_followed(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    os.mkfifo(elsewhere)
    reader = os.open(elsewhere, os.O_RDWR | os.O_NONBLOCK)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "doorbell").symlink_to(elsewhere)
    bell = Doorbell(tmp_path / "data")
    bell.ring()
    with pytest.raises(BlockingIOError):
        os.read(reader, 1)  # nothing was written through the link
    os.close(reader)
    assert bell.make() is False and bell.wait(0.05) is False


def test_something_else_at_the_doorbell_path_is_left_alone_and_workers_poll(tmp_path):
    (tmp_path / "doorbell").write_bytes(b"not a pipe")
    bell = Doorbell(tmp_path)
    assert bell.make() is False
    bell.ring()
    assert bell.wait(0.05) is False
    assert (tmp_path / "doorbell").read_bytes() == b"not a pipe"


def test_a_submission_through_the_api_rings(tmp_path):
    from fastapi.testclient import TestClient

    from certify.service import tokens
    from certify.service.api import create_app
    from certify.service.store import Store

    settings = ServiceSettings(data_dir=tmp_path / "data")
    settings.data_dir.mkdir()
    db.upgrade(settings.database_url)
    store = Store.open(settings.database_url)
    secret = tokens.create(store, "acme", "submit,read").secret
    store.close()
    listener = Doorbell(settings.data_dir)
    listener._open()
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {secret}"}) as c:
        sha = hashlib.sha256(VNC_VMX).hexdigest()
        assert c.put(f"/v1/blobs/sha256:{sha}", content=VNC_VMX).status_code == 201
        assert listener.wait(0) is False
        body = {"artifact": f"sha256:{sha}", "filename": "app.vmx"}
        assert c.post("/v1/scans", json=body).status_code == 202
        assert listener.wait(0) is True
        assert c.post("/v1/scans", json=body).status_code == 200  # the existing scan: nothing new to do
        assert listener.wait(0) is False
    listener.close()


def test_a_worker_takes_a_rung_scan_without_waiting_out_its_poll(sqlite_service, monkeypatch):
    monkeypatch.setattr(worker_module, "IDLE_POLL", 600.0)
    bell = Doorbell(sqlite_service.data)
    worker = InThreadWorker(sqlite_service.settings(scan_engine="fake:0"))
    worker.thread.start()
    try:
        wait_for("the worker listens", lambda: bell.make() and _has_reader(bell.path))
        row = sqlite_service.submit(sqlite_service.upload(VNC_VMX, "app.vmx"), "app.vmx")
        bell.ring()
        done = wait_for("the scan ends", lambda: sqlite_service.settled(row.id), deadline=120)
    finally:
        worker.stop.set()
        bell.ring()  # its wait is 600 s long here: wake it to see the stop
        worker.thread.join(timeout=60)
    assert done.state == "succeeded"
    assert not worker.thread.is_alive()


def _has_reader(fifo: Path) -> bool:
    """Whether this process holds ``fifo`` open (the in-thread worker opened it)."""
    target = os.path.realpath(fifo)
    return any(os.path.realpath(f"/proc/self/fd/{fd}") == target for fd in os.listdir("/proc/self/fd")
               if os.path.exists(f"/proc/self/fd/{fd}"))


# -- a scan child forked ahead ---------------------------------------------------------------------


def _warm_children(worker_pid: int) -> list[int]:
    """The worker's children that are a copy of it (forked, not started): its scan child in waiting."""
    return [pid for pid in children_of(worker_pid) if cmdline(pid) == cmdline(worker_pid)]


def test_an_idle_worker_forks_its_next_scan_child_and_a_scan_uses_it(sqlite_service, workers, tmp_path):
    proc = sqlite_service.worker_process("w-warm", "fake:0", log=tmp_path / "worker.log")
    workers.append(proc)
    [first] = wait_for("a scan child forked ahead", lambda: _warm_children(proc.pid))
    row = sqlite_service.submit(sqlite_service.upload(VNC_VMX, "app.vmx"), "app.vmx")
    done = wait_for("the scan ends", lambda: sqlite_service.settled(row.id))
    assert done.state == "succeeded", (tmp_path / "worker.log").read_text()
    assert not alive(first)  # used up by the scan
    [second] = wait_for("the next one forked ahead", lambda: _warm_children(proc.pid))
    assert second != first
    proc.terminate()
    assert proc.wait(timeout=60) == 0
    wait_for("the unused one ends with its worker", lambda: not alive(second), deadline=30)


# -- Nagle -----------------------------------------------------------------------------------------


def test_connections_to_the_api_socket_have_nagle_off():
    listening = bind("127.0.0.1", 0)
    seen: list[int] = []

    async def main() -> None:
        accepted = asyncio.Event()

        def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            seen.append(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()
            accepted.set()

        server = await asyncio.start_server(connected, sock=listening)  # how uvicorn serves our socket
        _, writer = await asyncio.open_connection(*listening.getsockname()[:2])
        await asyncio.wait_for(accepted.wait(), 10)
        writer.close()
        server.close()
        await server.wait_closed()

    asyncio.run(main())
    assert seen and seen[0] != 0

