"""Atomic writes: a failure mid-write leaves the old version and no debris."""

from __future__ import annotations

import os
import stat

import pytest

from inception_hub.atomic import atomic_dir, atomic_file
from inception_hub.errors import InceptionHubError


def test_file_is_replaced_whole_or_not_at_all(tmp_path):
    dest = tmp_path / "sub" / "weights.npz"
    with atomic_file(dest) as f:
        f.write(b"old")
    with pytest.raises(RuntimeError), atomic_file(dest) as f:
        f.write(b"half of the new")
        raise RuntimeError("disk full")
    assert dest.read_bytes() == b"old"
    assert [p.name for p in dest.parent.iterdir()] == ["weights.npz"]


def test_folder_is_replaced_whole_or_not_at_all(tmp_path):
    dest = tmp_path / "model"
    with atomic_dir(dest) as staging:
        staging.mkdir()
        (staging / "a.txt").write_text("first")
    with pytest.raises(InceptionHubError, match="already exists .*not empty"), atomic_dir(dest):
        pass
    ours = lambda p: (p / "a.txt").is_file() or (p / "b.txt").is_file()  # noqa: E731
    with pytest.raises(RuntimeError), atomic_dir(dest, overwrite=True, ours=ours) as staging:
        staging.mkdir()
        (staging / "b.txt").write_text("second")
        raise RuntimeError("interrupted")
    assert [p.name for p in dest.iterdir()] == ["a.txt"]
    with atomic_dir(dest, overwrite=True, ours=ours) as staging:
        staging.mkdir()
        (staging / "b.txt").write_text("second")
    assert [p.name for p in dest.iterdir()] == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_overwrite_never_removes_what_the_package_did_not_write(tmp_path):
    """Only a folder `ours` recognises is replaced: a folder of photos, a photo or a link to them
    named as the destination is refused, even with overwrite, and stays as it was."""
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.jpg").write_bytes(b"jpeg")
    photo = tmp_path / "vacation.jpg"
    photo.write_bytes(b"jpeg")
    link = tmp_path / "link"
    link.symlink_to(photos)
    for dest in (photos, photo, link):
        for overwrite in (False, True):
            refused = pytest.raises(InceptionHubError, match="already exists")
            with refused, atomic_dir(dest, overwrite=overwrite, ours=lambda p: False) as staging:
                staging.mkdir()
    with pytest.raises(InceptionHubError, match="not written by inception-hub"), atomic_dir(photos, overwrite=True):
        pass
    assert (photos / "a.jpg").read_bytes() == b"jpeg" and photo.read_bytes() == b"jpeg" and link.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "photos", "vacation.jpg"]


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_files_honour_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        with atomic_file(tmp_path / "shared.npz") as f:
            f.write(b"weights")
        with open(tmp_path / "plain.txt", "w") as f:  # what an ordinary write gives
            f.write("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "shared.npz").stat().st_mode) == 0o666 & ~mask
    assert stat.S_IMODE((tmp_path / "shared.npz").stat().st_mode) == stat.S_IMODE(
        (tmp_path / "plain.txt").stat().st_mode
    )


def test_a_refusal_offers_overwrite_only_where_it_exists(tmp_path):
    """finetune has no --overwrite: its refusal must not tell the user to pass one."""
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "x").write_text("x")
    with pytest.raises(InceptionHubError) as plain, atomic_dir(dest):
        pass
    assert "--overwrite" not in str(plain.value) and "choose another path" in str(plain.value)
    with pytest.raises(InceptionHubError, match="or --overwrite to replace it"), atomic_dir(dest, ours=lambda p: True):
        pass
