"""Sub-commands of the ``pipeline`` CLI; each module exposes ``register(subparsers)``."""
