"""The pure, synchronous screening core.

Owns: guarding and decoding untrusted image bytes, computing hashes, Hamming indexes, hash lists,
matching and decisions. Must not: touch Kafka, Faust, the network, files, the clock, the
environment or logging handlers. Everything here is a function of its arguments, so it can run in
worker processes and be tested without any running service (tests/contract enforces the import
boundary).
"""
