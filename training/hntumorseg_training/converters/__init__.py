"""Challenge data -> nnU-Net v2 raw datasets, fold splits and MONAI datalists.

* :func:`.hntsmrg.convert_hntsmrg` (HNTS-MRG 2024 task 1 / task 2 with seed 003's gradient maps),
* :func:`.hecktor.convert_hecktor` (HECKTOR 2025, optional head crop and 4-channel CT),
* :mod:`.splits` (``splits_final.json`` by patient), :mod:`.monai_datalist`.

Example:
    >>> from hntumorseg_training.converters import convert_hntsmrg, write_dataset_splits
    >>> folder = convert_hntsmrg("HNTSMRG24_train", "nnUNet_raw", 502, task="midrt")
    >>> write_dataset_splits(folder, n_folds=5, seed=12345)
"""

from .hecktor import convert_hecktor
from .hntsmrg import convert_hntsmrg
from .monai_datalist import build_datalist, fold_lists, write_datalist
from .nnunet_raw import read_raw_dataset
from .splits import install_splits, make_splits, write_dataset_splits, write_splits

__all__ = ["convert_hecktor", "convert_hntsmrg", "build_datalist", "fold_lists", "write_datalist",
           "read_raw_dataset", "install_splits", "make_splits", "write_dataset_splits", "write_splits"]
