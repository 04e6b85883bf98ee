"""`sentinel --help` is quick: it imports no scikit-learn, and the option lists it shows
are the library's own."""

from __future__ import annotations

import json
import subprocess
import sys

from entropy_sentinel.cli.fit import CHOICES


def test_help_imports_no_estimator_library() -> None:
    code = (
        "import sys, json\n"
        "from entropy_sentinel.cli import app\n"
        "print(json.dumps([m for m in ('sklearn', 'scipy', 'pandas', 'matplotlib') "
        "if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_fit_options_list_the_library_values() -> None:
    from entropy_sentinel.estimator.features import FEATURE_SETS
    from entropy_sentinel.estimator.grids import FAMILIES
    from entropy_sentinel.estimator.presets import PRESETS

    assert CHOICES["preset"] == tuple(PRESETS)
    assert CHOICES["family"] == FAMILIES
    assert CHOICES["features"] == FEATURE_SETS
