"""Benign demo content: procedurally generated images and a demo hash list made from them.

Owns everything ``pipeline demo`` and the end-to-end tests need to show matching without any
real abuse imagery: deterministic synthetic pictures (smooth random fields with shapes, so their
perceptual hashes are well spread), the near-copies a platform sees (re-encoded, resized,
brightened), and unrelated pictures that must not match.
"""
