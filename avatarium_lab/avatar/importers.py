"""Import a custom avatar from a local path, bytes or an http(s) URL: validated, then kept in a disk cache.

Ready Player Me closed on 2026-01-31, so custom avatars now arrive as files users exported before (RPM .glb), VRM
files (VRoid...) or URLs of RPM-format models on hosts they run. :func:`import_avatar` takes any of them and returns
an :class:`ImportedAvatar`: the path of a GLB that passed :func:`~avatarium_lab.avatar.check.check_avatar` and its
report.

Decisions:

- **https only**, except plain http to loopback (``127.0.0.1``, ``::1``, ``localhost``: a model server on the same
  machine, the test servers). Every redirect hop is checked the same way, so https cannot be downgraded. Other
  schemes (``file:``, ``ftp:``) are refused. The check runs before any request.
- **Size capped while streaming**: a ``Content-Length`` over ``max_bytes`` is refused before the body is read;
  otherwise the download aborts as soon as the bytes received pass ``max_bytes`` (after decompression, so a gzip
  bomb is cut short too). ``timeout`` bounds connecting and each read, and the whole download takes at most about
  twice ``timeout``.
- **Validated before it is kept**: nothing that fails ``check_avatar`` reaches the cache; the error keeps its type
  (``NotAGlb``, ``TruncatedAvatar``...) with the URL prefixed to its message.
- **Cache**: ``<cache_dir>/<sha256 of the URL>.glb`` plus ``<sha256>.json`` (URL, ETag, Last-Modified, size,
  content sha256, time). The next call returns the cached file with no request at all (it is re-checked: cheap,
  and a damaged cache file is downloaded again); ``refresh=True`` revalidates with ``If-None-Match`` /
  ``If-Modified-Since`` and keeps the file on ``304``. Files are written to a temporary name and renamed, so a
  concurrent reader never sees half a file. Bytes imports are cached by their content hash; local paths are used
  where they are (not copied).
- The default cache directory follows the project's convention (``providers.embedded.cache_dir``):
  ``$AVATARIUM_CACHE_DIR`` or ``$XDG_CACHE_HOME/avatarium-lab`` (``~/.cache/avatarium-lab``), then ``avatars/``.
- ``httpx`` when it is installed, else ``urllib``; both behave the same. Proxies from the environment are used
  for remote hosts but never for loopback.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import AvatarError
from .check import MAX_FILE_BYTES, AvatarCheckError, AvatarReport, AvatarTooLarge, RigMap, check_avatar

try:  # pragma: no cover - depends on the environment
    import httpx
except ImportError:  # pragma: no cover
    httpx = None  # type: ignore[assignment]

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_CHUNK = 64 * 1024
USER_AGENT = "avatarium-lab avatar importer"


class AvatarImportError(AvatarError):
    """Importing an avatar failed before its content could be checked (URL refused, HTTP error, network)."""

    reason = "import_failed"


class InsecureAvatarUrl(AvatarImportError):
    """Not https (plain http is allowed to loopback hosts only), or not a web URL at all. No request was made."""

    reason = "insecure_url"


class AvatarNotFound(AvatarImportError):
    """The server answered 404 or 410 (or the local file does not exist)."""

    reason = "not_found"


class AvatarDownloadTimeout(AvatarImportError):
    reason = "timeout"
    retryable = True


class AvatarDownloadTooLarge(AvatarImportError, AvatarTooLarge):
    """The download passed ``max_bytes`` (announced by Content-Length or counted while streaming); aborted."""

    reason = "too_large"


class AvatarDownloadFailed(AvatarImportError):
    """Any other HTTP error status or network failure; ``status`` is the HTTP status if there was one."""

    reason = "download_failed"

    def __init__(self, message: str, *, status: int | None = None, retryable: bool | None = None) -> None:
        super().__init__(message, retryable=retryable)
        self.status = status


@dataclass(frozen=True)
class ImportedAvatar:
    """A validated avatar on disk: ``path`` (a GLB, VRMs included), its ``report``, where it came from."""

    path: Path
    report: AvatarReport
    source: str
    from_cache: bool = False
    sha256: str = ""

    def read_bytes(self) -> bytes:
        return self.path.read_bytes()


def default_cache_dir() -> Path:
    """``$AVATARIUM_CACHE_DIR/avatars`` or ``$XDG_CACHE_HOME/avatarium-lab/avatars`` (``~/.cache/...``)."""
    base = os.environ.get("AVATARIUM_CACHE_DIR")
    root = Path(base) if base else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "avatarium-lab"
    return root / "avatars"


def check_url(url: str) -> str:
    """Raise :class:`InsecureAvatarUrl` unless ``url`` is https, or http to a loopback host; returns the host."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise InsecureAvatarUrl(f"not a valid URL: {url!r} ({exc})") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not host:
        raise InsecureAvatarUrl(f"refused {url!r}: avatars download over https:// (or http:// from this machine) only")
    if scheme == "http" and host not in LOOPBACK_HOSTS:
        raise InsecureAvatarUrl(f"refused {url!r}: plain http is allowed only to loopback hosts "
                                f"({', '.join(sorted(LOOPBACK_HOSTS))}); use https://")
    return host


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _checked(data: bytes | Path, *, max_bytes: int, name: str | None, preset: Any, context: str) -> AvatarReport:
    try:
        return check_avatar(data, max_bytes=max_bytes, name=name, preset=preset)
    except AvatarCheckError as exc:
        raise type(exc)(f"{context}: {exc.message}") from exc


def _url_name(url: str) -> str | None:
    stem = Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).stem
    return stem or None


# --------------------------------------------------------------------------------------------------------------
# Downloads
# --------------------------------------------------------------------------------------------------------------


@dataclass
class _Response:
    status: int
    body: bytes
    headers: Mapping[str, str]


def _status_error(url: str, status: int) -> AvatarImportError:
    if status in (404, 410):
        return AvatarNotFound(f"{url}: not found (HTTP {status})")
    retryable = status >= 500 or status == 429
    return AvatarDownloadFailed(f"{url}: the server answered HTTP {status}", status=status, retryable=retryable)


def _too_large(url: str, size: int, max_bytes: int, announced: bool) -> AvatarDownloadTooLarge:
    if announced:
        return AvatarDownloadTooLarge(f"{url}: too large: the server announces {size:,} bytes, the limit is "
                                      f"{max_bytes:,}; nothing was downloaded")
    return AvatarDownloadTooLarge(f"{url}: too large: more than {max_bytes:,} bytes (the limit) received; "
                                  "download aborted")


def _announced(url: str, headers: Mapping[str, str], max_bytes: int) -> None:
    value = headers.get("content-length")
    if value and value.strip().isdigit() and int(value) > max_bytes:
        raise _too_large(url, int(value), max_bytes, True)


def _download_httpx(url: str, headers: dict[str, str], timeout: float, max_bytes: int, loopback: bool) -> _Response:
    deadline = time.monotonic() + timeout

    def on_request(request: Any) -> None:  # every hop, redirects included
        check_url(str(request.url))

    try:
        with httpx.Client(timeout=httpx.Timeout(timeout), follow_redirects=True, max_redirects=5,
                          trust_env=not loopback, event_hooks={"request": [on_request]}) as client:
            with client.stream("GET", url, headers=headers) as r:
                if r.status_code == 304:
                    return _Response(304, b"", dict(r.headers))
                if r.status_code >= 400:
                    raise _status_error(url, r.status_code)
                _announced(url, r.headers, max_bytes)
                buf = bytearray()
                for chunk in r.iter_bytes(_CHUNK):
                    buf += chunk
                    if len(buf) > max_bytes:
                        raise _too_large(url, len(buf), max_bytes, False)
                    if time.monotonic() > deadline + timeout:
                        raise AvatarDownloadTimeout(f"{url}: the download took longer than {2 * timeout:g} s")
                return _Response(r.status_code, bytes(buf), {k.lower(): v for k, v in r.headers.items()})
    except httpx.TimeoutException as exc:
        raise AvatarDownloadTimeout(f"{url}: timed out after {timeout:g} s ({type(exc).__name__})") from exc
    except httpx.TooManyRedirects as exc:
        raise AvatarDownloadFailed(f"{url}: too many redirects") from exc
    except httpx.HTTPError as exc:
        raise AvatarDownloadFailed(f"{url}: download failed: {exc or type(exc).__name__}", retryable=True) from exc


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    max_redirections = 5

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
        check_url(newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _download_urllib(url: str, headers: dict[str, str], timeout: float, max_bytes: int, loopback: bool) -> _Response:
    deadline = time.monotonic() + timeout
    handlers: list[Any] = [_CheckedRedirects()]
    if loopback:
        handlers.append(urllib.request.ProxyHandler({}))
    opener = urllib.request.build_opener(*handlers)
    request = urllib.request.Request(url, headers=headers)
    try:
        with opener.open(request, timeout=timeout) as r:
            _announced(url, {k.lower(): v for k, v in r.headers.items()}, max_bytes)
            buf = bytearray()
            while chunk := r.read(_CHUNK):
                buf += chunk
                if len(buf) > max_bytes:
                    raise _too_large(url, len(buf), max_bytes, False)
                if time.monotonic() > deadline + timeout:
                    raise AvatarDownloadTimeout(f"{url}: the download took longer than {2 * timeout:g} s")
            return _Response(r.status, bytes(buf), {k.lower(): v for k, v in r.headers.items()})
    except urllib.error.HTTPError as exc:
        if exc.code == 304:
            return _Response(304, b"", {k.lower(): v for k, v in exc.headers.items()})
        raise _status_error(url, exc.code) from exc
    except TimeoutError as exc:
        raise AvatarDownloadTimeout(f"{url}: timed out after {timeout:g} s") from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise AvatarDownloadTimeout(f"{url}: timed out after {timeout:g} s") from exc
        raise AvatarDownloadFailed(f"{url}: download failed: {exc.reason}", retryable=True) from exc
    except (OSError, ValueError) as exc:  # connection reset mid-body, malformed responses
        raise AvatarDownloadFailed(f"{url}: download failed: {exc}", retryable=True) from exc


def _download(url: str, headers: dict[str, str], timeout: float, max_bytes: int, loopback: bool) -> _Response:
    fetch = _download_httpx if httpx is not None else _download_urllib
    return fetch(url, headers, timeout, max_bytes, loopback)


# --------------------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------------------


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _import_url(url: str, cache: Path, *, timeout: float, max_bytes: int, refresh: bool, name: str | None,
                preset: Any) -> ImportedAvatar:
    host = check_url(url)
    key = hashlib.sha256(url.encode("utf-8")).hexdigest()
    glb, meta_path = cache / f"{key}.glb", cache / f"{key}.json"
    name = name or _url_name(url)
    meta = _read_meta(meta_path) if glb.exists() else {}
    if glb.exists() and not refresh:
        try:
            report = check_avatar(glb, max_bytes=max_bytes, name=name, preset=preset)
            return ImportedAvatar(glb, report, url, from_cache=True, sha256=str(meta.get("sha256", "")))
        except AvatarCheckError:
            meta = {}  # a damaged cache entry: download it again
    headers = {"User-Agent": USER_AGENT,
               "Accept": "model/gltf-binary, model/vrm, application/octet-stream;q=0.9, */*;q=0.5"}
    if meta and glb.exists():
        if isinstance(meta.get("etag"), str):
            headers["If-None-Match"] = meta["etag"]
        if isinstance(meta.get("last_modified"), str):
            headers["If-Modified-Since"] = meta["last_modified"]
    r = _download(url, headers, timeout, max_bytes, host in LOOPBACK_HOSTS)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    if r.status == 304:
        report = _checked(glb, max_bytes=max_bytes, name=name, preset=preset, context=url)
        _atomic_write(meta_path, json.dumps({**meta, "checked_at": now}, indent=2).encode())
        return ImportedAvatar(glb, report, url, from_cache=True, sha256=str(meta.get("sha256", "")))
    report = _checked(r.body, max_bytes=max_bytes, name=name, preset=preset, context=url)
    digest = hashlib.sha256(r.body).hexdigest()
    cache.mkdir(parents=True, exist_ok=True)
    _atomic_write(glb, r.body)
    info = {
        "url": url, "etag": r.headers.get("etag"), "last_modified": r.headers.get("last-modified"),
        "content_type": r.headers.get("content-type"), "size": len(r.body), "sha256": digest,
        "format": report.format, "fetched_at": now, "checked_at": now,
    }  # fmt: skip
    _atomic_write(meta_path, json.dumps(info, indent=2).encode())
    return ImportedAvatar(glb, report, url, from_cache=False, sha256=digest)


def import_avatar(
    source: str | bytes | bytearray | memoryview | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    timeout: float = 10.0,
    max_bytes: int = MAX_FILE_BYTES,
    refresh: bool = False,
    name: str | None = None,
    preset: str | Path | RigMap | Mapping[str, Any] | None = None,
) -> ImportedAvatar:
    """Validate an avatar from a path, bytes or an http(s) URL and return it on disk with its report.

    URLs are downloaded once into ``cache_dir`` (default :func:`default_cache_dir`) and reused without a request;
    ``refresh=True`` revalidates with the server. Bytes are cached by content hash; paths are checked in place.
    Raises :class:`InsecureAvatarUrl`, :class:`AvatarNotFound`, :class:`AvatarDownloadTimeout`,
    :class:`AvatarDownloadTooLarge`, :class:`AvatarDownloadFailed`, or the check's own error (``NotAGlb``...).
    """
    if timeout <= 0 or max_bytes <= 0:
        raise ValueError("timeout and max_bytes must be positive")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if isinstance(source, str) and _URL_RE.match(source):
        return _import_url(source, cache, timeout=timeout, max_bytes=max_bytes, refresh=refresh, name=name,
                           preset=preset)
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        report = _checked(data, max_bytes=max_bytes, name=name, preset=preset, context="uploaded avatar")
        digest = hashlib.sha256(data).hexdigest()
        path = cache / f"{digest}.glb"
        if not path.exists():
            cache.mkdir(parents=True, exist_ok=True)
            _atomic_write(path, data)
        return ImportedAvatar(path, report, "bytes", from_cache=False, sha256=digest)
    if not isinstance(source, str | os.PathLike):
        raise TypeError(f"import_avatar needs a path, bytes or a URL, not {type(source).__name__}")
    path = Path(source).expanduser()
    if not path.exists():
        raise AvatarNotFound(f"no such avatar file: {path}")
    report = check_avatar(path, max_bytes=max_bytes, name=name, preset=preset)
    return ImportedAvatar(path.resolve(), report, str(path), from_cache=False)


__all__ = [
    "LOOPBACK_HOSTS",
    "AvatarDownloadFailed",
    "AvatarDownloadTimeout",
    "AvatarDownloadTooLarge",
    "AvatarImportError",
    "AvatarNotFound",
    "ImportedAvatar",
    "check_url",
    "default_cache_dir",
    "import_avatar",
]
