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

from sparkdl_pipe.errors import DatasetError, SparkSetupError, UserInputError

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


#: Schemes models, checkpoints and small files may use (pyarrow filesystems; Spark's Hadoop side agrees).
SCHEMES = ("file", "hdfs", "viewfs", "s3", "s3a")


def filesystem(url: str):
    """``(pyarrow FileSystem, path inside it)`` for a URL or local path.

    ``s3a://`` is read as ``s3://``. For S3, ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` (the
    AWS SDK's variables, e.g. ``http://127.0.0.1:9000`` for MinIO) set the endpoint; credentials come
    from the usual ``AWS_*`` variables or ``~/.aws``. Another scheme is a user mistake (one line).
    """
    from pyarrow import fs as pafs

    u = to_url(url)
    scheme = urlparse(u).scheme
    if scheme not in SCHEMES:
        raise UserInputError(f"storage URL {url}", "a path or a file://, hdfs://, s3:// or s3a:// URL",
                             fix="Copy the data to one of those filesystems")
    if scheme == "s3a":
        u = "s3://" + u[len("s3a://"):]
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if scheme in ("s3", "s3a") and endpoint and "endpoint_override" not in u:
        ep = urlparse(endpoint)
        path = u[len("s3://"):].split("?", 1)[0]
        return pafs.S3FileSystem(endpoint_override=ep.netloc or ep.path, scheme=ep.scheme or "https",
                                 region=os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION")), path
    try:
        return pafs.FileSystem.from_uri(u)
    except OSError as e:
        if scheme not in ("hdfs", "viewfs"):
            raise
        raise SparkSetupError(f"cannot reach {url} from Python: {e}. HDFS needs libhdfs: set JAVA_HOME, "
                              "HADOOP_HOME, ARROW_LIBHDFS_DIR and CLASSPATH=$(hadoop classpath --glob) "
                              "(README, 'Storage URLs')") from e



def exists(url: str) -> bool:
    if is_local(url):
        return os.path.exists(local_path(url))
    from pyarrow import fs as pafs

    fs, p = filesystem(url)
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
    fs, p = filesystem(url)
    with fs.open_output_stream(p) as f:
        f.write(text.encode())


def read_json(url: str) -> Any:
    if is_local(url):
        with open(local_path(url), encoding="utf-8") as f:
            return json.load(f)
    fs, p = filesystem(url)
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
    from pyarrow import fs as pafs

    fs, p = filesystem(url)
    kind = fs.get_file_info(p).type
    if kind == pafs.FileType.Directory:
        fs.delete_dir(p)
    elif kind == pafs.FileType.File:
        fs.delete_file(p)


# --- moving files between a node's local disk and any URL (models, checkpoints, logs) ----------------

def list_names(url: str) -> list[str]:
    """Names of the entries directly under directory ``url`` (empty when it does not exist)."""
    from pyarrow import fs as pafs

    fs, p = filesystem(url)
    try:
        infos = fs.get_file_info(pafs.FileSelector(p, allow_not_found=True))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(i.base_name for i in infos)


def size(url: str) -> int | None:
    """Bytes of the file at ``url`` (None when there is no file)."""
    fs, p = filesystem(url)
    info = fs.get_file_info(p)
    return info.size if info.is_file else None


def _copy(src_fs, src: str, dst_fs, dst: str, is_dir: bool) -> None:
    from pyarrow import fs as pafs

    dst_fs.create_dir(dst if is_dir else dst.rsplit("/", 1)[0], recursive=True)
    # use_threads=False: with pyarrow 14, a threaded copy of more files than the IO thread pool has
    # threads into S3 (whose background writes need that pool too) waits forever.
    pafs.copy_files(src, dst, source_filesystem=src_fs, destination_filesystem=dst_fs, use_threads=False)


def upload(local: str, url: str) -> None:
    """Copy a local file or directory tree to ``url`` (any scheme, ``file://`` included).

    Runs on: driver and executors (rank 0 writes locally, then uploads with this).
    """
    from pyarrow import fs as pafs

    dst_fs, dst = filesystem(url)
    _copy(pafs.LocalFileSystem(), os.path.abspath(local), dst_fs, dst, os.path.isdir(local))


def download(url: str, local: str) -> None:
    """Copy the file or directory tree at ``url`` to the local path ``local``."""
    from pyarrow import fs as pafs

    src_fs, src = filesystem(url)
    info = src_fs.get_file_info(src)
    if info.type == pafs.FileType.NotFound:
        raise DatasetError(f"{url} does not exist")
    _copy(src_fs, src, pafs.LocalFileSystem(), os.path.abspath(local), info.type == pafs.FileType.Directory)


def copy(src_url: str, dst_url: str) -> None:
    """Copy a file or directory tree from one URL to another (the schemes may differ)."""
    from pyarrow import fs as pafs

    src_fs, src = filesystem(src_url)
    dst_fs, dst = filesystem(dst_url)
    info = src_fs.get_file_info(src)
    if info.type == pafs.FileType.NotFound:
        raise DatasetError(f"{src_url} does not exist")
    _copy(src_fs, src, dst_fs, dst, info.type == pafs.FileType.Directory)


def move(src_url: str, dst_url: str) -> None:
    """Rename a file or directory on one filesystem; S3, which cannot rename, copies then deletes."""
    if is_local(src_url) and is_local(dst_url):
        dst = local_path(dst_url)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        os.replace(local_path(src_url), dst)
        return
    fs, src = filesystem(src_url)
    _, dst = filesystem(dst_url)
    try:
        fs.move(src, dst)
    except (NotImplementedError, OSError) as e:  # S3: no directory rename
        if type(fs).__name__ != "S3FileSystem":
            raise
        log.debug("moving %s by copy + delete (%s)", src_url, e)
        copy(src_url, dst_url)
        remove(src_url)


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
    move(staging, target)  # S3 cannot rename a directory: copied, then the staging copy dropped


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
