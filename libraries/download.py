"""Downloading a ``label<TAB>url`` list into class folders, and removing near-duplicate images.

Downloads run concurrently with timeouts and retries with backoff (requests + urllib3 ``Retry``). Each file is
held in memory, checked to decode, shrunk to a maximum side, and only then written into its class folder
atomically (a temporary file, then a rename), so the image folders never hold a partial or broken download.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import requests
from PIL import Image
from requests.adapters import HTTPAdapter
from tqdm.auto import tqdm
from urllib3.util.retry import Retry

from .artifacts import atomic_path
from .errors import MissingArtifact
from . import duplicates
from .images import ImageError, list_files, read_image

MAX_DOWNLOAD_BYTES = 50 * 1024 * 1024


@dataclass
class DownloadResult:
    label: str
    url: str
    status: str  # 'downloaded', 'skipped' (already there) or 'failed'
    reason: str = ""
    path: str = ""


def check_label(label: str) -> str:
    """A label must be a plain folder name: no path separators, no '..', not absolute, not hidden."""
    if (not label or label in (".", "..") or "/" in label or "\\" in label or label.startswith(".")
            or os.path.isabs(label) or "\0" in label):
        raise ValueError(f"label {label!r} is not a plain folder name and would escape the image folder")
    return label


def read_url_list(tsv: Path) -> tuple[list[tuple[str, str]], list[str]]:
    """Read ``label<TAB>url`` lines; return the good (label, url) pairs and one message per refused line."""
    tsv = Path(tsv)
    if not tsv.is_file():
        raise MissingArtifact(f"URL list {tsv} does not exist: set dl_urlsFile to a 'label<TAB>url' file")
    items, problems = [], []
    for number, line in enumerate(tsv.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 2:
            problems.append(f"{tsv}:{number}: expected 'label<TAB>url', got {line[:80]!r}")
            continue
        label, url = parts[0].strip(), parts[1].strip()
        try:
            check_label(label)
        except ValueError as err:
            problems.append(f"{tsv}:{number}: {err}")
            continue
        if urlparse(url).scheme not in ("http", "https"):
            problems.append(f"{tsv}:{number}: {url[:80]!r} is not an http(s) URL")
            continue
        items.append((label, url))
    return items, problems


def file_name_for(url: str) -> str:
    """A stable, safe file name for a URL: its readable stem plus a short hash, with a .jpg suffix."""
    stem = Path(unquote(urlparse(url).path)).stem
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_")[:60] or "image"
    return f"{stem}_{hashlib.sha1(url.encode()).hexdigest()[:8]}.jpg"


def make_session(retries: int = 3, backoff: float = 0.5, pool_size: int = 16) -> requests.Session:
    retry = Retry(total=retries, connect=retries, read=retries, status=retries, backoff_factor=backoff,
                  status_forcelist=(429, 500, 502, 503, 504), allowed_methods=frozenset({"GET"}),
                  raise_on_status=False, respect_retry_after_header=True)
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry, pool_connections=pool_size, pool_maxsize=pool_size)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = "image-classification-pytorch/0.1"
    return session


def shrink_to_jpeg(rgb: np.ndarray, max_side: int, quality: int = 95) -> bytes:
    """Encode an RGB array as JPEG after shrinking it so its longest side is at most ``max_side``."""
    image = Image.fromarray(rgb)
    if max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.LANCZOS)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def _reason(err: Exception) -> str:
    if isinstance(err, requests.exceptions.HTTPError) and err.response is not None:
        return f"HTTP {err.response.status_code}"
    if isinstance(err, (requests.exceptions.Timeout,)):
        return "timeout"
    if isinstance(err, requests.exceptions.RetryError):
        return "too many retries (server errors)"
    if isinstance(err, requests.exceptions.SSLError):
        return "TLS error"
    if isinstance(err, requests.exceptions.ConnectionError):
        return "connection error (dead host or no network)"
    if isinstance(err, ImageError):
        return "not a usable image"
    return type(err).__name__


def download_one(session: requests.Session, label: str, url: str, dest_dir: Path, timeout: float,
                 max_side: int) -> DownloadResult:
    target = dest_dir / label / file_name_for(url)
    if target.exists():
        return DownloadResult(label, url, "skipped", "already there", str(target))
    try:
        with session.get(url, timeout=(timeout, timeout), stream=True) as response:
            response.raise_for_status()
            chunks, size = [], 0
            for chunk in response.iter_content(1 << 16):
                size += len(chunk)
                if size > MAX_DOWNLOAD_BYTES:
                    raise ImageError(url, f"larger than {MAX_DOWNLOAD_BYTES // 2**20} MiB")
                chunks.append(chunk)
        data = b"".join(chunks)
        rgb = read_image(data, name=url)
        jpeg = shrink_to_jpeg(rgb, max_side)
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as tmp:
            tmp.write_bytes(jpeg)
        return DownloadResult(label, url, "downloaded", "", str(target))
    except (requests.exceptions.RequestException, ImageError) as err:
        detail = err.reason if isinstance(err, ImageError) else str(err)[:200]
        return DownloadResult(label, url, "failed", _reason(err), detail)


def download_all(items: list[tuple[str, str]], dest_dir: Path, workers: int = 16, timeout: float = 10.0,
                 retries: int = 3, max_side: int = 1000, progress: bool = True) -> list[DownloadResult]:
    """Download every (label, url) into ``dest_dir/<label>/``; files already there are skipped."""
    dest_dir = Path(dest_dir)
    for label in {label for label, _ in items}:
        check_label(label)
    session = make_session(retries, pool_size=workers)
    results = []
    with ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(download_one, session, label, url, dest_dir, timeout, max_side) for label, url in items]
        for future in tqdm(as_completed(futures), total=len(futures), desc="downloading", unit="url", disable=not progress):
            results.append(future.result())
    return results


def summarize(results: list[DownloadResult], duplicates_removed: int | None = None) -> str:
    counts = Counter(r.status for r in results)
    lines = [f"downloaded: {counts['downloaded']}, skipped (already there): {counts['skipped']}, failed: {counts['failed']}"]
    for reason, n in Counter(r.reason for r in results if r.status == "failed").most_common():
        lines.append(f"  failed, {reason}: {n}")
    if duplicates_removed is not None:
        lines.append(f"near-duplicates removed: {duplicates_removed}")
    return "\n".join(lines)


def remove_near_duplicates(folder: Path, max_distance: int = 0) -> list[Path]:
    """Delete all but the first (in sorted order, across all classes) of each group of near-duplicate images
    (``duplicates.find``: dhash within ``max_distance`` bits, alike in fine detail); return the removed paths.
    Unreadable files are left for the pipeline to report."""
    found, _ = duplicates.find(list_files(Path(folder)), max_distance, progress=False)
    removed = [path for group in found for path in group[1:]]
    for path in removed:
        path.unlink()
    return removed
