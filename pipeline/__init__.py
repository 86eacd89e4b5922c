"""Upload screening pipeline: match uploads against hash lists of known abuse imagery.

The package splits into a pure, synchronous core (``pipeline.core``: guard, hashing, indexes,
hash lists, matching, decisions) and edges that do I/O (``pipeline.adapters``, the Faust wiring in
``pipeline.app``/``pipeline.agents``, the CLI). See README.md for the data flow.
"""

import os

# Before anything imports numpy: one BLAS thread per process. The pipeline's matrix products
# are tiny (PDQ's 64 x n resampling) and its parallelism is its hashing processes, one per
# core; OpenBLAS's default thread per core made each product 10x slower in CPU time on two
# loaded cores (PDQ per view 35 ms instead of 3.6, measured). A value set by the operator wins.
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

__version__ = "0.1.0"
