"""``python -m entropy_sentinel.spark`` / ``spark-submit .../entropy_sentinel/spark/__main__.py``:
the ``sentinel`` commands with the Spark engine, in the session spark-submit made.

    spark-submit --master yarn "$(python -c 'import entropy_sentinel.spark.__main__ as m;
    print(m.__file__)')" estimate s3a://bucket/traces/ --model model.skops -o out.csv

``features`` and ``estimate`` run with ``--engine spark`` unless another engine is given.
"""

from __future__ import annotations

import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    """Run a ``sentinel`` command with ``--engine spark`` added to features / estimate."""
    from entropy_sentinel import cli

    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("features", "estimate") and "--engine" not in args:
        args += ["--engine", "spark"]
    sys.argv = ["sentinel", *args]
    cli.main()


if __name__ == "__main__":
    main()
