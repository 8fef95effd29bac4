"""The paper's diagnostics (SCIENCE.md §9): why a model fails, beside the Q that says whether it does.

:mod:`.volume_scan` (E(V) of rigid-molecule scans, the zero-density baseline shift per composition),
:mod:`.trajectory` (errors of a model on relabelled frames of its own trajectory, against time and
against the reference value) and :mod:`.liquids` (the out-of-distribution liquids of chemical
generalisation). Each is a set of pure functions over frames, predictions and tables; the sweep's
``diagnostics`` tasks (:mod:`harness.sweep.diagnostics`) feed them and the report draws them.
"""
