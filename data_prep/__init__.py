"""Turning expression databases into the LMDBs the nets read."""
