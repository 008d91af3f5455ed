"""Synthetic head-and-neck cases for tests and the demo (no patient data needed).

* :func:`make_prert_case` / :func:`make_midrt_case`: T2w MRI, HNTS-MRG 2024 (tasks 1 and 2);
* :func:`make_petct_case`: CT (HU) + PET (SUV) on different grids, HECKTOR 2025;
* :func:`write_hntsmrg_cohort` / :func:`write_hecktor_cohort`: whole cohorts on disk in
  each challenge's own file layout.

Labels are uint8: 0 background, 1 GTVp, 2 GTVn. Every case is determined by its seed.

Example:
    >>> from HNTumorSegLib.phantoms import make_petct_case
    >>> case = make_petct_case(seed=1, tall=True)
    >>> sorted(case)
    ['CT', 'PET', 'mask']
"""

from .mri import make_midrt_case, make_prert_case
from .petct import make_petct_case
from .writers import write_hecktor_cohort, write_hntsmrg_cohort

__all__ = ["make_prert_case", "make_midrt_case", "make_petct_case", "write_hntsmrg_cohort",
           "write_hecktor_cohort"]
