"""Reading input files by path inside Spark tasks, turning every failure into a reject reason.

Folder and manifest inputs are both read here (not with Spark's ``binaryFile`` source, whose task
fails on one unreadable file and whose ``ignoreMissingFiles`` drops records silently), so a file
that is unreadable, a broken symlink, a FIFO, or removed between listing and reading becomes one
reject row with a reason, and the job goes on.

Runs on: executors (and the driver in tests).
"""

from __future__ import annotations

import os
import stat
from urllib.parse import quote, unquote, urlparse

from sparkdl_pipe.errors import SparkdlPipeError
from sparkdl_pipe.rejects import FILE_TOO_LARGE, MISSING_FILE, UNREADABLE

#: Files larger than this are rejected without being read (no image we can train on is this big,
#: and reading it would hold it in the worker's memory).
MAX_FILE_BYTES = 1 << 30


def file_url(path: str) -> str:
    """A local path as the ``file:`` URL our listing and Spark's use (percent-encoded, reversible).

    >>> file_url("/data/a b/ü.png")
    'file:/data/a%20b/%C3%BC.png'
    """
    return "file:" + quote(path)


def path_of(url: str) -> str:
    """The filesystem path component of a URL (``file:/a/b%20c`` -> ``/a/b c``); plain paths as given."""
    p = urlparse(url)
    return unquote(p.path) if p.scheme else url


def _read_local(path: str, max_bytes: int) -> tuple[bytes | None, str | None, str | None]:
    # One open, then fstat on the descriptor: O_NONBLOCK so a FIFO never blocks the open (it is
    # refused by its type below); following symlinks, a broken one raises FileNotFoundError.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file (FIFO, socket, device)"
            return None, UNREADABLE, f"{kind}: not read"
        if st.st_size > max_bytes:
            return None, FILE_TOO_LARGE, f"{st.st_size} bytes is over the limit of {max_bytes}"
        # One read of the size fstat gave plus one byte: fewer bytes than asked for is the end of
        # the file. A file that grew since (or reports no size, like /proc) is read on to the end.
        first = os.read(fd, st.st_size + 1) if st.st_size else b""
        if 0 < len(first) <= st.st_size:
            return first, None, None
        chunks = [first]
        left = max_bytes + 1 - len(first)
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 16))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks), None, None
    finally:
        os.close(fd)


def read_bytes(url: str, max_bytes: int = MAX_FILE_BYTES) -> tuple[bytes | None, str | None, str | None]:
    """(bytes, None, None) or (None, reason code, message) for a local path/URL or a remote URL.

    Never blocks on special files: a local path is opened non-blocking and anything but a regular
    file is refused before it is read.
    """
    try:
        # our listing's own form (``file:`` + a quoted absolute path) skips the URL parser
        local = unquote(url[5:]) if url.startswith("file:/") and not url.startswith("file://") else (
            path_of(url) if urlparse(url).scheme in ("", "file") else None)
        if local is not None:
            return _read_local(local, max_bytes)
        from pyarrow import fs as pafs

        from sparkdl_pipe import storage

        fs, p = storage.filesystem(url)  # s3a:// as s3://, the AWS_ENDPOINT_URL_S3 endpoint (MinIO...)
        info = fs.get_file_info(p)
        if info.type == pafs.FileType.NotFound:
            return None, MISSING_FILE, "file not found"
        if info.type != pafs.FileType.File:
            return None, UNREADABLE, "not a regular file: not read"
        if info.size is not None and info.size > max_bytes:
            return None, FILE_TOO_LARGE, f"{info.size} bytes is over the limit of {max_bytes}"
        with fs.open_input_stream(p) as f:
            return f.read(), None, None
    except FileNotFoundError as e:
        return None, MISSING_FILE, f"file not found (missing, a broken symlink, or removed since listing): {e}"[:300]
    except (OSError, ValueError, SparkdlPipeError) as e:  # the last: a URL of a scheme we do not read
        return None, UNREADABLE, f"{type(e).__name__}: {e}"[:300]
