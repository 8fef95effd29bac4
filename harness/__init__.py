"""harness: trust tests for machine-learned interatomic potentials of molecular liquids."""
