"""Resumable HTTP downloads with a progress bar, written atomically."""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from tqdm.auto import tqdm

CHUNK = 1 << 20
USER_AGENT = "inception-hub"


class DownloadError(OSError):
    """The download failed after its retries; the partial file is kept for the next attempt."""


def download(
    url: str,
    dest: Path,
    *,
    progress: bool = True,
    retries: int = 2,
    timeout: float = 15.0,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Fetch `url` to `dest`, resuming from `dest.part` if an earlier attempt was cut off.

    `dest` appears only when complete (rename from the `.part` file), so a reader never sees half
    a file. The caller is expected to hold a lock if other processes may download the same file.
    `timeout` bounds each wait for the server; each retry is announced through `log` (default:
    stderr), so a hung network is never silent for long.
    """
    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    last_error: Exception | None = None
    for attempt in range(retries + 1):
        try:
            _fetch_into(url, part, progress=progress, timeout=timeout)
            os.replace(part, dest)
            return dest
        except (urllib.error.URLError, http.client.HTTPException, OSError, TimeoutError) as e:
            if isinstance(e, urllib.error.HTTPError) and e.code < 500 and e.code != 429:
                raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from e
            if isinstance(getattr(e, "reason", None), socket.gaierror):  # no DNS: retrying won't help
                raise DownloadError(f"{url}: cannot resolve the host ({e.reason.strerror})") from e
            last_error = e
            if attempt < retries:
                delay = min(2.0**attempt, 10.0)
                reason = getattr(e, "reason", None) or e
                log(f"download of {url} failed ({reason}); retry {attempt + 1} of {retries} in {delay:g}s")
                time.sleep(delay)
    reason = getattr(last_error, "reason", None) or last_error
    raise DownloadError(f"{url}: {reason}") from last_error


def _fetch_into(url: str, part: Path, *, progress: bool, timeout: float) -> None:
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # our partial file is not a prefix the server can continue
            part.unlink()
            return _fetch_into(url, part, progress=progress, timeout=timeout)
        raise
    with response:
        if have and response.status != 206:  # server ignored the range: start over
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        mode = "ab" if have else "wb"
        with (
            open(part, mode) as f,
            tqdm(
                total=total,
                initial=have,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=part.name.removesuffix(".part"),
                disable=not progress,
                leave=False,
            ) as bar,
        ):
            shutil.copyfileobj(_Counting(response, bar), f, CHUNK)
            f.flush()
            os.fsync(f.fileno())
    if total is not None and part.stat().st_size != total:
        raise DownloadError(f"{url}: connection closed after {part.stat().st_size} of {total} bytes")


class _Counting:
    """File-like wrapper that advances a progress bar as bytes are read."""

    def __init__(self, raw, bar) -> None:
        self.raw, self.bar = raw, bar

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.bar.update(len(data))
        return data
