"""Molecular dynamics: ensembles, failure detectors, writers, checkpoint/restart (issue #5)."""
