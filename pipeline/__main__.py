"""``python -m pipeline``: the same entry point as the ``pipeline`` console script."""

from pipeline.cli import main

raise SystemExit(main())
