"""Run ``llama_cpp.server`` with an exact, faster top-k selection for logprobs.

``python -m entropy_sentinel.collect.llama_launch [llama_cpp.server arguments]`` is
``python -m llama_cpp.server`` with one change: llama-cpp-python 0.3.x picks the
``top_logprobs`` alternatives of each generated token with
``sorted(zip(logprobs, range(vocab_size)), reverse=True)``, a Python sort of the
whole vocabulary (49,152 entries for SmolLM2) per token, which is 70% of the
generation time with logprobs on this machine (measured: 15.7 s for 100 tokens,
11.2 s of it in ``sorted``). We replace the ``sorted`` name inside
``llama_cpp.llama`` only, by `fast_sorted`, which recognises exactly that call
and returns its first `TOP_N` entries, identical (values, order, tie-breaks)
to the full sort, selected with ``numpy.argpartition``. Any other call goes to
the builtin ``sorted``. The caller only ever slices ``[:top_logprobs]``, so
responses are byte-identical for ``top_logprobs <= TOP_N`` (OpenAI's own limit
is 20); a request for more alternatives than `TOP_N` gets `TOP_N`.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = ["TOP_N", "fast_sorted", "install", "main"]

TOP_N = 1024
"""Entries returned by the fast path: exact for any ``top_logprobs`` <= 1024."""

_builtin_sorted = builtins.sorted


def fast_sorted(iterable: Iterable[Any], /, *, key: Any = None, reverse: bool = False) -> list[Any]:
    """``sorted`` that short-cuts ``sorted(zip(array, range(len(array))), reverse=True)``.

    For that exact pattern it returns the first `TOP_N` items of the full sort:
    ``(array[i], i)`` pairs by decreasing value, ties by decreasing index (tuple
    order). Everything else is passed to the builtin ``sorted`` unchanged.
    """
    parts = _zip_of_array_and_range(iterable) if reverse and key is None else None
    if parts is None:
        return _builtin_sorted(iterable, key=key, reverse=reverse)
    values, source = parts
    n = values.shape[0]
    if n <= TOP_N:
        idx = np.arange(n)
    else:
        # The TOP_N largest; among values tied at the cut, the full sort keeps the
        # highest indices, so take those (argpartition alone would pick arbitrarily).
        threshold = np.partition(values, n - TOP_N)[n - TOP_N]
        above = np.flatnonzero(values > threshold)
        tied = np.flatnonzero(values == threshold)
        idx = np.concatenate([above, tied[len(tied) - (TOP_N - len(above)) :]])
    # Descending by value, then by index (what reverse tuple sorting does).
    order = np.lexsort((-idx, -values[idx].astype(np.float64)))
    chosen = idx[order]
    return [(source[i], int(i)) for i in chosen]


def _zip_of_array_and_range(obj: Any) -> tuple[np.ndarray[Any, Any], Any] | None:
    """``(values, source)`` when ``obj`` is exactly ``zip(source, range(len(source)))``,
    unstarted, with ``source`` a float array or a list of floats (llama-cpp-python's
    streaming path passes ``logprobs.tolist()``); ``values`` is ``source`` as an array."""
    if type(obj) is not zip:
        return None
    reduced: Any = obj.__reduce__()
    _, iterators = reduced
    if len(iterators) != 2:
        return None
    first: Any = iterators[0].__reduce__()
    second: Any = iterators[1].__reduce__()
    f_fn, f_args, *f_state = first
    s_fn, s_args, *s_state = second
    if f_fn is not builtins.iter or s_fn is not builtins.iter:
        return None
    if f_state != [0] or s_state != [0] or len(f_args) != 1 or len(s_args) != 1:
        return None
    source, rng = f_args[0], s_args[0]
    if not isinstance(rng, range):
        return None
    if type(source) is list:
        if not all(type(v) is float for v in source):
            return None  # ints, bools, other types: their tuple order is the builtin's job
        array = np.array(source, dtype=np.float64)  # exact: Python floats are float64
    elif isinstance(source, np.ndarray) and np.issubdtype(source.dtype, np.floating):
        array = source
    else:
        return None
    if array.ndim != 1 or rng != range(array.shape[0]):
        return None
    if np.isnan(array).any():
        return None  # NaN ordering in tuple sorts is not a total order: leave it alone
    return array, source


def install() -> None:
    """Patch the ``sorted`` name inside ``llama_cpp.llama`` (nowhere else)."""
    import llama_cpp.llama as llama_module

    llama_module.sorted = fast_sorted  # type: ignore[attr-defined]


def main() -> None:
    """Entry point: patch, then run ``llama_cpp.server``'s own ``main``."""
    install()
    from llama_cpp.server.__main__ import main as server_main

    server_main()  # type: ignore[no-untyped-call]


if __name__ == "__main__":
    main()
