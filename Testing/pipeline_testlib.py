"""Helpers shared by the pipeline / segment / demo tests (not a test module itself)."""

from __future__ import annotations

import hashlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO_MODELS = ROOT / "HNTumorSegLib" / "resources" / "models"
DEMO_MIDRT = DEMO_MODELS / "demo-midrt"
DEMO_PETCT = DEMO_MODELS / "demo-petct"


def make_random_model(folder: Path, task: str, inputs: list[dict]) -> Path:
    """A real model folder (card + randomly initialised STU-Net weights and their sha256) for ``task``.

    Its predictions are meaningless; it exercises loading, checks, tiling and writing.
    """
    import torch

    from HNTumorSegLib.models.card import ModelCard, write_card
    from HNTumorSegLib.networks import build_network

    from hntumorseg_training.demo_model import demo_card

    # the demo models' geometry (spacing, patch, STU-Net) for the task, with other inputs
    card = demo_card("petct" if task == "petct" else "midrt")
    card.update({"id": f"test-{task}", "title": f"random test model ({task})", "task": task, "inputs": inputs})
    card.pop("box_margin_vox", None)
    card.pop("training", None)
    parsed = ModelCard.from_dict(card)
    torch.manual_seed(0)
    net = build_network(parsed.architecture, parsed.num_input_channels, parsed.num_output_channels)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), folder / "fold_0.pt")
    card["sha256"] = {"fold_0.pt": hashlib.sha256((folder / "fold_0.pt").read_bytes()).hexdigest()}
    write_card(card, folder)
    return folder
