"""Fetch a zip archive: stream it to a temporary file, verify it, then unpack it into place atomically.

Every step works beside the destination (same file system) under hidden names, and the unpacked
folder is renamed into place only when complete, so a failure or Ctrl-C at any point leaves no
half-written destination and never touches an existing one.
"""
import hashlib
import http.client
import os
import secrets
import shutil
import sys
import time
import urllib.error
import urllib.request
import zipfile
import zlib

from .errors import DatasetError

CMP_BASE_URL = "https://cmp.felk.cvut.cz/~tylecr1/facade/CMP_facade_DB_base.zip"
CMP_BASE_PAIRS = 378  # the base set: 378 rectified facades, each cmp_bNNNN.jpg + cmp_bNNNN.png
CHUNK = 1 << 20


class Progress:
    """Bytes so far, percent and rate: tqdm's live bar on a terminal or in a notebook, a plain
    line (the same figures, tqdm's format) per 10% when stderr is a log file."""

    def __init__(self, name, total, stream=None, enabled=True):
        from tqdm import tqdm
        from tqdm.auto import tqdm as live
        self.name, self.total, self.enabled = name, total, enabled
        self.stream = stream or sys.stderr
        self.done, self.start, self.decile = 0, time.perf_counter(), -1
        self.format = tqdm.format_meter
        interactive = (hasattr(self.stream, "isatty") and self.stream.isatty()) or \
            "ipykernel" in sys.modules
        self.bar = live(total=total, desc=name, file=self.stream, unit="B", unit_scale=True,
                        dynamic_ncols=True) if enabled and interactive else None

    def update(self, n):
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.enabled and self.total and self.done * 10 // self.total > self.decile:
            self.decile = self.done * 10 // self.total
            line = self.format(self.done, self.total, time.perf_counter() - self.start,
                               prefix=self.name, unit="B", unit_scale=True)
            print(line, file=self.stream, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def fetch(url, path, progress=True, timeout=60):
    """Stream url into the file at path; return {'sha256': hex, 'md5': hex}. Failures are DatasetErrors."""
    digests, n = {"sha256": hashlib.sha256(), "md5": hashlib.md5()}, 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(path, "wb") as f:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            bar = Progress(os.path.basename(url.rstrip("/")) or url, total, enabled=progress)
            while True:
                chunk = response.read(CHUNK)
                if not chunk:
                    break
                f.write(chunk)
                for d in digests.values():
                    d.update(chunk)
                n += len(chunk)
                bar.update(len(chunk))
            bar.close()
    except urllib.error.HTTPError as e:
        raise DatasetError(f"download of {url} failed: HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise DatasetError(f"cannot download {url}: {e.reason}") from None
    except (OSError, http.client.HTTPException) as e:  # reset, timeout, IncompleteRead, full disk
        raise DatasetError(f"download of {url} broke off after {n} bytes: {type(e).__name__}: {e}") from None
    # http.client returns b"" when the server closes early, so the length is checked here
    if total is not None and n != total:
        raise DatasetError(f"download of {url} is truncated: got {n} of {total} bytes")
    return {k: d.hexdigest() for k, d in digests.items()}


def verify(url, digests, sha256=None, md5=None):
    """Compare the digests of a fetched file with those the caller pinned."""
    for kind, want in (("sha256", sha256), ("md5", md5)):
        if want and digests[kind] != want.lower():
            raise DatasetError(f"checksum mismatch for {url}: {kind} {digests[kind]}, "
                               f"expected {want.lower()}")


def _digests(path):
    """sha256 and md5 of a file on disk."""
    digests = {"sha256": hashlib.sha256(), "md5": hashlib.md5()}
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            for d in digests.values():
                d.update(chunk)
    return {k: d.hexdigest() for k, d in digests.items()}


def _temporary(dest, suffix):
    """A new empty hidden file beside dest (its folder made if need be)."""
    parent, name = os.path.split(os.path.abspath(dest))
    part = os.path.join(parent, f".{name}.{secrets.token_hex(4)}{suffix}")
    try:
        os.makedirs(parent, exist_ok=True)
        open(part, "xb").close()  # unlike mkstemp's 0600, open honours the umask
    except OSError as e:
        raise DatasetError(f"cannot write to {parent}: {e}") from None
    return part


def download_file(urls, path, sha256=None, md5=None, progress=True, timeout=60):
    """Fetch one file from the first mirror in `urls` that gives it whole, with the pinned checksums."""
    # it appears at path only when complete; an existing path is kept: returned if its checksums
    # match (or none is pinned), else a DatasetError
    urls = [urls] if isinstance(urls, str) else list(urls)
    if os.path.lexists(path):
        if sha256 or md5:
            try:
                verify(path, _digests(path), sha256, md5)
            except DatasetError:
                raise DatasetError(f"{path} already exists with other contents; remove it to download "
                                   "again (not overwritten)") from None
        return path
    problems = []
    for url in urls:
        part = _temporary(path, ".part")
        try:
            verify(url, fetch(url, part, progress=progress, timeout=timeout), sha256, md5)
            os.replace(part, path)
            return path
        except DatasetError as e:
            problems.append(str(e))
        finally:
            if os.path.exists(part):
                os.remove(part)
    raise DatasetError(problems[0] if len(problems) == 1 else
                       f"no mirror gave {os.path.basename(path)}: " + "; ".join(problems))


def check_zip(path, url, expected=None):
    """Names in the zip at path, after its CRCs, its paths and the caller's `expected(names)` pass."""
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
            names = zf.namelist()
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as e:
        raise DatasetError(f"{url} is not a valid zip archive (truncated or corrupt download): {e}") from None
    if bad is not None:
        raise DatasetError(f"{url}: archive member {bad} is corrupt (CRC mismatch)")
    for name in names:  # a member must land inside the destination
        parts = name.replace("\\", "/").split("/")
        if name.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]:
            raise DatasetError(f"{url}: archive member {name} would be written outside the destination")
    problem = expected(names) if expected else None
    if problem:
        raise DatasetError(f"{url} does not hold the expected data: {problem}")
    return names


def unpack(path, dest):
    """Extract the zip at path into a hidden sibling of dest, then rename it to dest."""
    parent, name = os.path.split(os.path.abspath(dest))
    staging = os.path.join(parent, f".{name}.unpacking-{secrets.token_hex(4)}")
    os.mkdir(staging)  # mkdir honours the umask, so the final folder gets ordinary permissions
    try:
        with zipfile.ZipFile(path) as zf:
            zf.extractall(staging)
        if os.path.lexists(dest):
            raise DatasetError(f"{dest} appeared while unpacking; left it as it is")
        os.rename(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def download(url, dest_dir, sha256=None, expected=None, progress=True, timeout=60):
    """Fetch the zip at url and unpack it as dest_dir, after its CRCs, sha256 and `expected` pass."""
    # expected(names) gets the archive's member names and returns None or a one-line problem;
    # any failure is a DatasetError and leaves nothing behind
    dest = os.fspath(dest_dir)
    if os.path.lexists(dest):
        raise DatasetError(f"{dest} already exists; remove it or choose another folder "
                           "(nothing was downloaded)")
    part = _temporary(dest, ".zip.part")
    try:
        verify(url, fetch(url, part, progress=progress, timeout=timeout), sha256)
        check_zip(part, url, expected)
        try:
            unpack(part, dest)
        except OSError as e:
            raise DatasetError(f"cannot unpack {url} into {dest}: {e}") from None
    finally:
        os.remove(part)
    return dest


def cmp_pairs(names):
    """Stems of the cmp_b* photos that come with their label PNG, among archive member names."""
    stems = {}
    for n in names:
        base, ext = os.path.splitext(n.replace("\\", "/"))
        if os.path.basename(base).startswith("cmp_b") and ext.lower() in (".jpg", ".png"):
            stems.setdefault(base, set()).add(ext.lower())
    return sorted(s for s, exts in stems.items() if exts == {".jpg", ".png"})


def download_facade(dest="data/facade", url=CMP_BASE_URL, sha256=None, progress=True):
    """Fetch the CMP Facade Database base set (378 photo/label pairs) into dest; returns dest."""
    def expected(names):
        n = len(cmp_pairs(names))
        if n != CMP_BASE_PAIRS:
            return f"{n} cmp_bNNNN photo/label pairs (.jpg + .png), expected {CMP_BASE_PAIRS}"
        return None
    return download(url, dest, sha256=sha256, expected=expected, progress=progress)
