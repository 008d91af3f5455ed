"""Training of seed 004's outcome networks (RFS and HPV): data, 5-fold CV, export to an outcome model card.

Modules: :mod:`.data` (cohort -> cases with patches and clinical records), :mod:`.train`
(patient-wise folds, AdamW, best epoch per fold, out-of-fold scores), :mod:`.export`
(weights + ``model.json`` the ``hntumorseg outcome`` command loads).
"""
