"""Outcome prediction (seed 004, HECKTOR 2025 tasks 2 and 3): PET biomarkers, RFS and HPV status.

Modules: :mod:`.biomarkers` (MTV, NTV, SUVmax/mean/peak, TLG, NLG), :mod:`.clinical` (clinical
tables and their encoding), :mod:`.patch` (the 96^3 CT/PET/mask input), :mod:`.network`
(ResNet-18 + lesion guidance + clinical MLP), :mod:`.survival` (discrete-time hazards, NLL,
risk), :mod:`.classification` (HPV losses), :mod:`.metrics` (C-index, HPV metrics),
:mod:`.card` (outcome model card), :mod:`.predictor` (fold ensemble for one case).
torch is imported only by :mod:`.network`, :mod:`.predictor` and inside the loss functions.

Research use only: see :data:`.card.RESEARCH_WARNING`.
"""
