"""Cohort runs: discover the cases of a layout, run them over local worker processes or a Ray
cluster, and resume an interrupted run.

Modules: :mod:`.cohort` (cases and requests), :mod:`.local` (N worker processes),
:mod:`.ray_backend` (optional Ray extra, imported lazily), :mod:`.resume` (done-markers).

Example:
    $ hntumorseg batch --layout hecktor --data hecktor2025/ --model demo-petct --out preds/ --workers 2
"""
