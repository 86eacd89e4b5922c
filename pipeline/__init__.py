"""Upload screening pipeline: match uploads against hash lists of known abuse imagery.

The package splits into a pure, synchronous core (``pipeline.core``: guard, hashing, indexes,
hash lists, matching, decisions) and edges that do I/O (``pipeline.adapters``, the Faust wiring in
``pipeline.app``/``pipeline.agents``, the CLI). See README.md for the data flow.
"""

__version__ = "0.1.0"
