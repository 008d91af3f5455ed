"""hntumorseg_training: the companion package that trains the models HNTumorSeg runs.

It imports :mod:`HNTumorSegLib` (one implementation of images, prompts, channels and
metrics), never the reverse.

Modules:

* :mod:`.demo_model` - trains the small bundled demo models (mid-RT and PET/CT) on
  synthetic phantoms: ``python -m hntumorseg_training.demo_model --task midrt --out DIR``.
* :mod:`.converters` - HNTS-MRG 2024 / HECKTOR 2025 -> nnU-Net raw datasets, patient-wise
  ``splits_final.json``, MONAI datalists.
* ``nnunet_trainers/`` - the folder to give nnU-Net as ``nnUNet_extTrainer``: seed 001's
  trainer, seed 000's v2*/v2**, STU-Net S/B/L/H (+ ``_ft``) for nnU-Net 2.8.
* :mod:`.pretrained` - official STU-Net checkpoints (v1 ``.model`` / v2 ``.pth``) for fine-tuning.
* :mod:`.segresnet` - MONAI SegResNetDS with seed 002's recipe (torchrun-ready).
* :mod:`.crossval` - fold evaluation, probability-averaging ensembles, clean-up threshold search.
* :mod:`.export` - nnU-Net results folder / SegResNet run -> model-card folder.
* :mod:`.cli` - ``python -m hntumorseg_training ...`` (see README section 8, "Training the seeds' models").
"""

__version__ = "0.1.0"
