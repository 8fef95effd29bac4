"""Observables of trajectories: statistics, density distributions, diffusivity (growing, issue #6)."""
