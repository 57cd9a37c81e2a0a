"""What an image folder is: one walker for classify, evaluate, fine-tuning and calibration."""

from __future__ import annotations

from pathlib import Path

from inception_hub.accuracy import find_samples
from inception_hub.files import find_images, is_image_name, walk
from inception_hub.finetune.data import scan


def tree(root: Path, names: list[str]) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")


def test_every_reader_leaves_out_hidden_files_and_folders_alike(tmp_path):
    """The walkers of classify, evaluate and finetune once disagreed on hidden files: a Mac's
    `._photo.jpg` resource forks were classified (and failed) by one and skipped by another."""
    tree(
        tmp_path,
        [
            "n01440764/b.JPEG",
            "n01440764/._b.JPEG",
            "n01440764/.cache/c.jpg",
            "n01443537/a.png",
            "n01443537/notes.txt",
            ".git/d.jpg",
        ],
    )
    images = [str(tmp_path / p) for p in ("n01440764/b.JPEG", "n01443537/a.png")]
    assert find_images([tmp_path]) == (images, [])
    assert walk(tmp_path) == images
    assert walk(tmp_path, images_only=False) == [*images, str(tmp_path / "n01443537/notes.txt")]
    assert [s.path for s in find_samples(tmp_path)] == images
    classes, files = scan(tmp_path)
    assert classes == ["n01440764", "n01443537"]
    assert [f for f, _ in files] == [*images, str(tmp_path / "n01443537/notes.txt")]
    hidden = tmp_path / "n01440764" / "._b.JPEG"
    assert find_images([hidden]) == ([str(hidden)], [])  # named explicitly: always taken
    assert is_image_name("X.TIFF") and not is_image_name("x.txt")
