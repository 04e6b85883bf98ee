"""The per-step arrays of a trace that waits for an estimator of its model.

A trace whose model has no estimator cannot be featurised yet: the entropy mode and the
top-k width its estimator will use are unknown. What scoring it later needs is kept
instead: the flat per-step arrays of its `Parsed` form (sampled logprob, whether the
sampled token is among the alternatives, the alternatives' logprobs, precomputed
entropies) and the ``k`` its record stated, as one compressed ``.npz`` (numpy's own
format, read back with ``allow_pickle=False``: plain arrays, nothing executable).
Size, top-20 logprobs: about 134 bytes per generated token, 2.4 kB for the committed
corpus' median answer of 18 tokens (``benchmarks/waiting_steps_size.py``).

>>> import numpy as np
>>> from entropy_sentinel.traces.parse import Parsed
>>> t = Parsed("r1", np.array([-0.1, -2.0]), np.array([True, False]),
...            np.array([[-0.1, -2.5], [-0.3, -1.4]]), None, {}, float("nan"), {}, k=2)
>>> back = unpack_steps("r1", pack_steps(t))
>>> back.topk_logprobs.tolist(), back.sampled_in_topk.tolist(), back.k
([[-0.1, -2.5], [-0.3, -1.4]], [True, False], 2)
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np

from entropy_sentinel.errors import StorageError
from entropy_sentinel.traces.parse import Parsed

__all__ = ["pack_steps", "unpack_steps"]


def pack_steps(trace: Parsed) -> bytes:
    """The per-step arrays of ``trace`` as compressed ``.npz`` bytes."""
    buf = io.BytesIO()
    arrays: dict[str, Any] = {
        "sampled_logprob": trace.sampled_logprob,
        "sampled_in_topk": trace.sampled_in_topk,
        "topk_logprobs": trace.topk_logprobs,
        "k": np.array(trace.k, dtype=np.int64),
    }
    if trace.token_entropy is not None:
        arrays["token_entropy"] = trace.token_entropy
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def unpack_steps(trace_id: str, data: bytes) -> Parsed:
    """The `Parsed` trace (no slice, label or meta) of `pack_steps` output."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            entropy = z["token_entropy"] if "token_entropy" in z.files else None
            return Parsed(
                id=trace_id,
                sampled_logprob=np.asarray(z["sampled_logprob"], dtype=np.float64),
                sampled_in_topk=np.asarray(z["sampled_in_topk"], dtype=bool),
                topk_logprobs=np.asarray(z["topk_logprobs"], dtype=np.float64),
                token_entropy=None if entropy is None else np.asarray(entropy, np.float64),
                slice={},
                label=math.nan,
                meta={},
                k=int(z["k"]),
            )
    except (OSError, ValueError, KeyError) as exc:
        raise StorageError(f"the stored steps of trace {trace_id!r} cannot be read: {exc}") from exc
