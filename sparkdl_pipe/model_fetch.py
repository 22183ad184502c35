"""Getting a model file from its URL onto this node's disk, once per model id, checked against its card.

Scoring tasks, the Spark ML Transformer and the driver's safe-mode check load models through
:func:`fetch_model`: the file at the model's URL (``file://``, ``hdfs://``, ``s3://``; one code path
for all) is copied through pyarrow into a per-user cache directory on this node,
``$TMPDIR/sparkdl_pipe-models-<uid>/<model id>-model.keras``, and kept there. The model id in the
card is the first 16 hex digits of the file's SHA-256, so a copy is checked before it is used: a
file changed after training (or a partial download) is refused, never scored with. Python workers
of one node share the cached file; a download goes to a temporary name and is renamed into place.

Runs on: driver and executors.
"""

from __future__ import annotations

import os
import re
import tempfile
import uuid

from sparkdl_pipe import storage
from sparkdl_pipe.errors import DatasetError
from sparkdl_pipe.model_card import file_sha256


def cache_dir() -> str:
    """This user's model cache directory on this node (created private, 0700)."""
    d = os.path.join(tempfile.gettempdir(), f"sparkdl_pipe-models-{os.getuid()}")
    os.makedirs(d, mode=0o700, exist_ok=True)
    st = os.stat(d)
    if st.st_uid != os.getuid() or st.st_mode & 0o022:
        raise DatasetError(f"model cache {d} belongs to another user or is writable by others",
                           fix="Remove it, or set TMPDIR to a private directory")
    return d


def fetch_model(url: str, model_id: str) -> str:
    """Local path of the model file at ``url`` (a path or URL), downloaded on first use and verified.

    >>> fetch_model("s3://bucket/models/m/model.keras", "3f2c0a9b1d7e4c55")  # doctest: +SKIP
    '/tmp/sparkdl_pipe-models-1000/3f2c0a9b1d7e4c55-model.keras'
    """
    if not re.fullmatch(r"[0-9a-f]{8,64}", str(model_id)):
        raise DatasetError("model id in the model card", "hex digits of the model file's sha256", model_id,
                           "Re-train the model")
    u = storage.to_url(url)
    dst = os.path.join(cache_dir(), f"{model_id}-{u.rstrip('/').rpartition('/')[2]}")
    if os.path.exists(dst):
        return dst
    tmp = f"{dst}.part-{uuid.uuid4().hex[:8]}"
    try:
        storage.download(u, tmp)
        digest = file_sha256(tmp)
        if not digest.startswith(model_id):
            raise DatasetError(f"model file {url} does not match its model card",
                               f"sha256 starting {model_id}", digest[:16],
                               "The file was changed after training: re-train, or copy the whole model directory")
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return dst
