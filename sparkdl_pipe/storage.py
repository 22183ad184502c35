"""Dataset / model paths as URLs (``file://``, ``hdfs://``, ``s3://``/``s3a://``) and small-file I/O.

Everything handed to executors is a plain string URL; no filesystem objects travel.
Runs on: driver and executors.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import uuid
from typing import Any
from urllib.parse import urlparse

from sparkdl_pipe.errors import DatasetError

log = logging.getLogger(__name__)

MANIFEST_FILE = "_sparkdl_manifest.json"
SPLITS = ("train", "val", "test")


def to_url(path_or_url: str) -> str:
    """Turn a local path into an absolute ``file://`` URL; leave other URLs alone.

    >>> to_url("/tmp/x")
    'file:///tmp/x'
    """
    s = str(path_or_url)
    scheme = urlparse(s).scheme
    if scheme in ("", "file"):
        p = s[len("file://"):] if s.startswith("file://") else (s[len("file:"):] if s.startswith("file:") else s)
        return "file://" + os.path.abspath(os.path.expanduser(p))
    return s.rstrip("/")


def is_local(url: str) -> bool:
    return urlparse(url).scheme in ("", "file")


def local_path(url: str) -> str:
    """The local filesystem path of a ``file://`` URL."""
    u = to_url(url)
    if not is_local(u):
        raise DatasetError("a local path", "a file:// URL or a plain path", url)
    return u[len("file://"):]


def spark_path(url: str) -> str:
    """The form Spark's Hadoop filesystems take (``file:/...``, ``hdfs://...``, ``s3a://...``)."""
    u = to_url(url)
    if u.startswith("s3://"):
        return "s3a://" + u[len("s3://"):]
    return u


def join(url: str, *parts: str) -> str:
    return "/".join([url.rstrip("/"), *[p.strip("/") for p in parts]])


def _fs(url: str):
    from pyarrow import fs as pafs

    u = to_url(url)
    if u.startswith("s3a://"):
        u = "s3://" + u[len("s3a://"):]
    return pafs.FileSystem.from_uri(u)


def exists(url: str) -> bool:
    if is_local(url):
        return os.path.exists(local_path(url))
    from pyarrow import fs as pafs

    fs, p = _fs(url)
    return fs.get_file_info(p).type != pafs.FileType.NotFound


def write_json(url: str, obj: Any) -> None:
    """Write JSON atomically (temp file + rename on local filesystems)."""
    text = json.dumps(obj, indent=2, sort_keys=True, default=str)
    if is_local(url):
        p = local_path(url)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        tmp = f"{p}.tmp-{uuid.uuid4().hex[:8]}"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, p)
        return
    fs, p = _fs(url)
    with fs.open_output_stream(p) as f:
        f.write(text.encode())


def read_json(url: str) -> Any:
    if is_local(url):
        with open(local_path(url), encoding="utf-8") as f:
            return json.load(f)
    fs, p = _fs(url)
    with fs.open_input_stream(p) as f:
        return json.loads(f.read().decode())


def read_metadata(url: str, filename: str, noun: str, how_to_make: str) -> tuple[str, Any]:
    """(URL, parsed JSON) of the metadata file a dataset or model directory carries.

    A missing directory or file is a user mistake with a one-line message naming ``how_to_make``.
    """
    u = to_url(url)
    if not exists(u):
        raise DatasetError(f"{noun} {url} does not exist", fix=f"Make one with '{how_to_make}'")
    if not exists(join(u, filename)):
        raise DatasetError(f"{url} is not a sparkdl_pipe {noun} (no {filename})",
                           fix=f"Point at the output of '{how_to_make}'")
    return u, read_json(join(u, filename))


def remove(url: str) -> None:
    if is_local(url):
        p = local_path(url)
        if os.path.isdir(p):
            shutil.rmtree(p)
        elif os.path.exists(p):
            os.remove(p)
        return
    fs, p = _fs(url)
    fs.delete_dir(p)


OWNER_FILE = "_sparkdl_staging_owner.json"


def _owner_alive(owner: dict) -> bool:
    """Whether the process that created a staging directory may still be running."""
    if owner.get("host") != socket.gethostname():
        return True  # another machine's job: we cannot tell, so we leave it alone
    try:
        import psutil

        p = psutil.Process(int(owner["pid"]))
        return abs(p.create_time() - float(owner.get("process_started", 0))) < 2.0
    except Exception:  # noqa: BLE001 - no such process (or no access): not alive
        return False


def clean_stale_staging(target: str) -> list[str]:
    """Remove staging directories beside ``target`` that a killed job left; restore an interrupted swap.

    A job killed while writing leaves ``.NAME.staging-XXXXXXXX`` beside the target (never the target
    itself). Such a directory is removed once its owner (host, pid and process start time, recorded
    in it) is gone; directories of live jobs, of other hosts, or without an owner record are left
    alone. A job killed between the two renames of an ``--overwrite`` publish leaves the previous
    output as ``...-old`` and no target: it is renamed back. Local filesystems only.

    Runs on: driver.
    """
    if not is_local(target):
        return []
    t = local_path(target).rstrip("/")
    parent, name = os.path.split(t)
    if not os.path.isdir(parent):
        return []
    done: list[str] = []
    prefix = f".{name}.staging-"
    for entry in sorted(os.listdir(parent)):
        if not entry.startswith(prefix):
            continue
        path = os.path.join(parent, entry)
        if entry.endswith("-old"):
            if not os.path.exists(t):
                os.replace(path, t)
                log.warning("restored %s from %s (a job was killed while replacing it)", t, path)
                done.append(f"restored {path}")
            else:
                shutil.rmtree(path, ignore_errors=True)
                done.append(f"removed {path}")
            continue
        try:
            with open(os.path.join(path, OWNER_FILE), encoding="utf-8") as f:
                owner = json.load(f)
        except (OSError, ValueError):
            log.warning("leaving %s alone: no owner record (not made by sparkdl_pipe, or still starting)", path)
            continue
        if _owner_alive(owner):
            log.warning("leaving %s alone: its job (pid %s on %s) may still be running", path,
                        owner.get("pid"), owner.get("host"))
            continue
        shutil.rmtree(path, ignore_errors=True)
        log.warning("removed %s, left by a killed job (pid %s)", path, owner.get("pid"))
        done.append(f"removed {path}")
    return done


def _write_owner(staging: str) -> None:
    if not is_local(staging):
        return
    import psutil

    p = local_path(staging)
    os.makedirs(p, exist_ok=True)
    me = psutil.Process()
    write_json(join(staging, OWNER_FILE), {"host": socket.gethostname(), "pid": os.getpid(),
                                            "process_started": me.create_time()})


def staging_url(target: str) -> str:
    """A sibling of ``target`` to write into before publishing by rename."""
    t = to_url(target).rstrip("/")
    head, _, name = t.rpartition("/")
    return f"{head}/.{name}.staging-{uuid.uuid4().hex[:8]}"


def publish(staging: str, target: str, overwrite: bool) -> None:
    """Move a finished staging directory to ``target`` (rename on local filesystems)."""
    if exists(target):
        if not overwrite:
            raise DatasetError(f"output {target} already exists", fix="Pass --overwrite to replace it")
        if is_local(target):
            old = staging_url(target) + "-old"
            os.replace(local_path(target), local_path(old))
            os.replace(local_path(staging), local_path(target))
            shutil.rmtree(local_path(old), ignore_errors=True)
            return
        remove(target)
    move(staging, target)


def move(src_url: str, dst_url: str) -> None:
    """Rename a directory (``dst_url`` must not exist); on S3, which cannot rename, copy then delete."""
    if is_local(dst_url):
        os.makedirs(os.path.dirname(local_path(dst_url)), exist_ok=True)
        os.replace(local_path(src_url), local_path(dst_url))
        return
    fs, src = _fs(src_url)
    _, dst = _fs(dst_url)
    try:
        fs.move(src, dst)
    except NotImplementedError:  # S3 cannot rename a directory: copy it, then drop the source
        from pyarrow import fs as pafs

        pafs.copy_files(src, dst, source_filesystem=fs, destination_filesystem=fs)
        fs.delete_dir(src)


def check_output(target: str, overwrite: bool) -> None:
    """Refuse early (before any work) to write onto an existing output without ``overwrite``."""
    if exists(target) and not overwrite:
        raise DatasetError(f"output {target} already exists", fix="Pass --overwrite to replace it")


def prepare_output(target: str, overwrite: bool) -> list[str]:
    """Clean up after killed jobs (:func:`clean_stale_staging`), then :func:`check_output`.

    Runs on: driver, before any work. Returns what was cleaned up.
    """
    done = clean_stale_staging(target)
    check_output(target, overwrite)
    return done


@contextlib.contextmanager
def staged_output(target: str, overwrite: bool, staging: str | None = None):
    """Yield a staging URL beside ``target``; publish it on success, remove it on any failure.

    >>> with staged_output("file:///tmp/out", overwrite=True) as staging:  # doctest: +SKIP
    ...     write_json(join(staging, "x.json"), {})
    """
    staging = staging or staging_url(target)
    try:
        _write_owner(staging)
        yield staging
        if is_local(staging):
            os.remove(local_path(join(staging, OWNER_FILE)))
        publish(staging, target, overwrite)
    except BaseException:
        if exists(staging):
            remove(staging)
        raise
