"""Stored token ids as MLlib terms, a batch at a time: the input of the TF-IDF baseline.

Runs on: executors (a pandas UDF of :mod:`sparkdl_pipe.driver.baseline`). Pure numpy + pandas.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def ids_as_terms(cells: pd.Series) -> pd.Series:
    """Raw little-endian int32 token cells -> lists of the ids as strings, padding (0) dropped.
    Out-of-vocabulary tokens (id 1) stay, as one term, as the models see them.

    >>> ids_as_terms(pd.Series([np.array([5, 1, 0], "<i4").tobytes()])).tolist()
    [['5', '1']]
    """
    out = []
    for cell in cells:
        ids = np.frombuffer(bytes(cell), dtype="<i4")
        out.append([str(int(i)) for i in ids[ids != 0]])
    return pd.Series(out, dtype=object)
