"""Use cases shared by the commands, the demo, the benchmarks and the worker.

Owns what the pipeline does for a caller, each module one use case or a few close ones:
screening files offline (:mod:`.screen_files`), building a matcher from hash-list files
(:mod:`.matchers`), validating and counting list files (:mod:`.list_files`), publishing and
retracting hash lists (:mod:`.hashlists`), submitting uploads and waiting for their verdicts
(:mod:`.uploads`), running the demo and demo traffic (:mod:`.demo`), and the small interfaces
they report through: progress callbacks (:mod:`.progress`) and the plain-text table the
commands and the benchmarks print (:mod:`.tables`).

Must not parse arguments, print or choose exit codes (the commands' job), nor be imported by
the layers below it: cli > commands > bench > worker > application > app/adapters > core
(the import-linter contracts in pyproject.toml; tests/contract checks them).
"""
