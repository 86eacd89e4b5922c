"""Hamming-radius indexes over fixed-width perceptual hashes, and exact-hash sets.

Every Hamming index implements :class:`pipeline.core.index.base.HammingIndex` and is checked
against :class:`pipeline.core.index.base.BruteForceIndex` in the tests.
"""
