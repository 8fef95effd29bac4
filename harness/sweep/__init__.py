"""Ablation sweeps: a content-hashed task graph, run on Dask, indexed in a per-workspace SQLite store."""
