"""The content-addressed blob directory: what is stored, and what every refusal leaves behind (nothing)."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from certify.service.blobs import (
    BlobStore, BlobTooLarge, DigestMismatch, InsufficientStorage, InvalidDigest,
)

MiB = 1 << 20


def chunks(data: bytes, size: int = 64 * 1024):
    for i in range(0, len(data), size):
        yield data[i:i + size]


def every_file(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture
def small_disk(tmp_path):
    """A real 4 MiB filesystem (tmpfs), so that free space is exactly what the test says."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_blob_lands_at_its_content_address_with_nothing_else(tmp_path):
    data = os.urandom(300_000)
    digest = hashlib.sha256(data).hexdigest()
    store = BlobStore(tmp_path / "data", reserve=0)
    stored = store.put(chunks(data), digest, max_size=MiB, declared_size=len(data))
    assert stored.created and stored.size == len(data)
    assert stored.path == tmp_path / "data" / "sha256" / digest[:2] / digest[2:4] / digest
    assert stored.path.read_bytes() == data
    assert every_file(tmp_path / "data") == ["sha256", f"sha256/{digest[:2]}", f"sha256/{digest[:2]}/{digest[2:4]}",
                                              f"sha256/{digest[:2]}/{digest[2:4]}/{digest}"]
    again = store.put(chunks(data), digest, max_size=MiB)
    assert not again.created and again.path.read_bytes() == data
    assert len(every_file(tmp_path / "data")) == 4
    with store.open(digest) as f:
        assert f.read() == data


def test_a_digest_mismatch_is_refused_and_leaves_nothing(tmp_path):
    data = b"appliance" * 1000
    wrong = hashlib.sha256(b"something else").hexdigest()
    store = BlobStore(tmp_path / "data", reserve=0)
    with pytest.raises(DigestMismatch) as caught:
        store.put(chunks(data, 100), wrong, max_size=MiB)
    assert wrong in str(caught.value) and hashlib.sha256(data).hexdigest() in str(caught.value)
    assert every_file(tmp_path / "data") == ["sha256"]
    assert not store.exists(wrong)


def test_a_truncated_upload_is_refused_and_leaves_nothing(tmp_path):
    data = os.urandom(10_000)
    digest = hashlib.sha256(data).hexdigest()
    store = BlobStore(tmp_path / "data", reserve=0)
    with pytest.raises(DigestMismatch, match="6000 bytes arrived of the 10000 announced"):
        store.put(chunks(data[:6000]), digest, max_size=MiB, declared_size=len(data))
    with pytest.raises(DigestMismatch, match="more than the 5000 bytes announced"):
        store.put(chunks(data, 1000), digest, max_size=MiB, declared_size=5000)
    assert every_file(tmp_path / "data") == ["sha256"]


def test_an_oversized_upload_stops_as_soon_as_it_passes_the_limit(tmp_path):
    data = os.urandom(100_000)
    digest = hashlib.sha256(data).hexdigest()
    store = BlobStore(tmp_path / "data", reserve=0)
    consumed = []

    def stream():
        for chunk in chunks(data, 10_000):
            consumed.append(len(chunk))
            yield chunk

    with pytest.raises(BlobTooLarge):
        store.put(stream(), digest, max_size=25_000)
    assert sum(consumed) == 30_000  # it did not read the rest of the body
    with pytest.raises(BlobTooLarge):  # announced over the limit: refused before a byte is written
        store.writer(digest, max_size=25_000, declared_size=len(data))
    assert every_file(tmp_path / "data") == ["sha256"]


@pytest.mark.parametrize("bad", ["A" * 64, "a" * 63, "../" + "a" * 61, "a" * 64 + "/", "", "g" * 64])
def test_names_that_are_not_sha256_digests_never_become_paths(tmp_path, bad):
    store = BlobStore(tmp_path / "data", reserve=0)
    with pytest.raises(InvalidDigest):
        store.put([b"x"], bad, max_size=10)
    assert not (tmp_path / "data" / "sha256").exists()


def test_an_upload_that_would_eat_the_reserve_is_refused_before_writing(small_disk):
    data = os.urandom(3 * MiB)
    digest = hashlib.sha256(data).hexdigest()
    store = BlobStore(small_disk, reserve=2 * MiB)
    with pytest.raises(InsufficientStorage):
        store.writer(digest, max_size=10 * MiB, declared_size=len(data))
    assert every_file(small_disk) == []


def test_free_space_is_checked_while_writing_and_the_partial_file_removed(small_disk):
    data = os.urandom(3 * MiB + 12345)
    digest = hashlib.sha256(data).hexdigest()
    store = BlobStore(small_disk, reserve=2 * MiB)
    # Nothing announced: the writer learns the size only as the bytes come.
    with pytest.raises(InsufficientStorage, match="reserve"):
        store.put(chunks(data), digest, max_size=10 * MiB)
    assert every_file(small_disk) == ["sha256"]


def test_a_full_disk_is_insufficient_storage_not_a_crash(small_disk):
    data = os.urandom(5 * MiB)
    digest = hashlib.sha256(data).hexdigest()
    store = BlobStore(small_disk, reserve=0)
    with pytest.raises(InsufficientStorage):
        store.put(chunks(data), digest, max_size=10 * MiB)
    assert every_file(small_disk) == ["sha256"]


def test_an_abandoned_upload_leaves_nothing(tmp_path):
    data = os.urandom(50_000)
    digest = hashlib.sha256(data).hexdigest()
    store = BlobStore(tmp_path / "data", reserve=0)

    def client_goes_away():
        yield data[:20_000]
        raise ConnectionResetError("client disconnected")

    with pytest.raises(ConnectionResetError):
        store.put(client_goes_away(), digest, max_size=MiB)
    assert every_file(tmp_path / "data") == ["sha256"]
    with store.writer(digest, max_size=MiB) as writer:  # left without commit
        writer.write(data[:1000])
    assert every_file(tmp_path / "data") == ["sha256"]


def test_two_uploads_of_the_same_bytes_at_once_keep_one_copy(tmp_path):
    data = os.urandom(200_000)
    digest = hashlib.sha256(data).hexdigest()
    store = BlobStore(tmp_path / "data", reserve=0)
    first, second = store.writer(digest, max_size=MiB), store.writer(digest, max_size=MiB)
    for chunk in chunks(data):
        first.write(chunk)
        second.write(chunk)
    assert first.commit().created is True
    assert second.commit().created is False
    assert every_file(tmp_path / "data")[-1] == f"sha256/{digest[:2]}/{digest[2:4]}/{digest}"
    assert len(every_file(tmp_path / "data")) == 4 and store.path_for(digest).read_bytes() == data
