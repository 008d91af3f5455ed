"""Predict RFS risk, interval survival and HPV probability for one PET/CT case with an outcome model.

Steps: PET biomarkers (:mod:`.biomarkers`) join the clinical record as continuous variables;
one patch per case (:mod:`.patch`); for each endpoint, every fold's network gets the patch and
its own encoding of the clinical vector; the folds' **logits are averaged** and then turned into
probabilities (the authors' ``InferenceModel.predict``): for RFS, hazards -> survival ``S_k``
-> risk ``-sum S_k``; for HPV, ``sigmoid`` of the mean logit. Networks run in eval mode on CPU
unless a device is given. Weights are sha256-checked and loaded with ``weights_only=True``.

Example (command line; it needs an outcome model trained and exported by training/, which a
docstring cannot build - Testing/test_outcome_model_io.py and Testing/test_outcome_training.py run
it, and compare it with ``OutcomePredictor(MODEL).predict(ct, pet, labels, {"Age": 61, "Gender": "M"})``,
whose ``out["rfs"]["risk"]`` and ``out["hpv"]["probability"]`` it prints)::

    $ hntumorseg outcome --model OUTCOME_MODEL --input CT=ct.nii.gz --input PET=pet.nii.gz \\
          --labels labels.nii.gz --clinical ehr.json --json outcome.json --plot outcome.png

The terminal text is :func:`format_prediction` of ``predict``'s dict (here an HPV-only one, by hand):
    >>> print(format_prediction({"warning": "RESEARCH USE ONLY ...", "hpv": {"probability": 0.64,
    ...                          "threshold": 0.5, "call": "positive", "folds": 5}}))
    RESEARCH USE ONLY ...
    <BLANKLINE>
    HPV probability: 0.640  (positive at threshold 0.5, 5 folds)
"""

from __future__ import annotations

import math
import os
import time
from typing import Any, Mapping


from ..errors import ModelError
from ..image import Image
from .biomarkers import compute_biomarkers
from .card import RESEARCH_WARNING, EndpointCard, OutcomeCard, read_outcome_card
from .clinical import imaging_features
from .patch import make_patch
from .survival import interval_names


def build_network(card: OutcomeCard, endpoint: EndpointCard, n_clinical: int):
    from .network import OutcomeNet

    arch = card.architecture
    return OutcomeNet(n_clinical, endpoint.n_outputs, block_inplanes=tuple(arch.get("block_inplanes", (32, 64, 128, 256))),
                      clinical_width=int(arch.get("clinical_width", 128)), head_width=int(arch.get("head_width", 128)),
                      dropout=float(arch.get("dropout", 0.1)))


class OutcomePredictor:
    """An outcome model loaded once, to predict many cases."""

    def __init__(self, model: str | os.PathLike, device: str = "cpu"):
        import torch

        from ..models.safe_load import load_checkpoint
        from ..models.weights import extract_state_dict, load_strict, verify_sha256

        from ..inference.devices import resolve_device

        self.card = read_outcome_card(model)
        self.device = resolve_device(device)   # `--device cuda` without a GPU: DeviceError, one line (issue 22)
        self.members: dict[str, list[tuple[Any, Any]]] = {}
        for name, ep in self.card.endpoints.items():
            members = []
            for fold in ep.folds:
                path = self.card.folder / fold.weights
                if not path.is_file():
                    raise ModelError(f"weights of {name} fold {fold.fold} are missing", path, "copy the whole model folder")
                verify_sha256(path, fold.sha256)
                net = build_network(self.card, ep, fold.clinical.size)
                load_strict(net, extract_state_dict(load_checkpoint(path), path), path, what=f"{name} fold {fold.fold}")
                net.to(self.device).eval()
                members.append((net, fold.clinical))
            self.members[name] = members

    def predict(self, ct: Image, pet: Image, labels: Image, clinical: Mapping[str, Any],
                biomarkers: dict | None = None) -> dict:
        """Risk, survival per interval and HPV probability, with the biomarkers used and timings."""
        import torch

        t0 = time.perf_counter()
        bm = biomarkers if biomarkers is not None else compute_biomarkers(pet, labels)
        record = {**dict(clinical), **imaging_features(bm["patient"])}
        patch = make_patch(ct, pet, labels, self.card.patch)
        t1 = time.perf_counter()
        x = torch.from_numpy(patch[None]).to(self.device)
        out: dict = {"warning": RESEARCH_WARNING, "model": self.card.id, "biomarkers": bm["patient"]}
        with torch.no_grad():
            for name, members in self.members.items():
                logits = torch.stack([net(x, torch.from_numpy(enc.transform(record)[None]).to(self.device))
                                      for net, enc in members]).mean(0).cpu()
                ep = self.card.endpoints[name]
                if name == "rfs":
                    from .survival import risk_from_logits, survival

                    s = survival(logits)[0].numpy()
                    out["rfs"] = {"risk": float(risk_from_logits(logits)[0]),
                                  "intervals_days": interval_names(ep.cut_points_days),
                                  "survival": [float(v) for v in s],
                                  "hazards": [float(v) for v in torch.sigmoid(logits)[0].numpy()],
                                  "folds": len(members)}
                elif all("temperature" in f.extra for f in ep.folds):
                    out["hpv"] = _calibrated_vote(self.members[name], ep, x, record, self.device)
                else:
                    p = float(torch.sigmoid(logits)[0, 0])
                    out["hpv"] = {"probability": p, "threshold": ep.threshold,
                                  "call": "positive" if p >= ep.threshold else "negative", "folds": len(members)}
        _check_finite(out)
        out["timings_s"] = {"preprocess": round(t1 - t0, 3), "networks": round(time.perf_counter() - t1, 3)}
        return out


def _calibrated_vote(members, ep, x, record, device) -> dict:
    """Seed 004's released HPV ensemble (``outcome-train --preset medai-hpv``): each fold's
    ``p_k = sigmoid(z_k / T_k)`` and vote ``p_k >= t_k``; positive when more than half vote so;
    the probability shown is the mean of the ``p_k``."""
    import torch

    probs, votes = [], []
    for (net, enc), fold in zip(members, ep.folds):
        z = net(x, torch.from_numpy(enc.transform(record)[None]).to(device)).cpu()[0, 0]
        p = float(torch.sigmoid(z / float(fold.extra["temperature"])))
        probs.append(p)
        votes.append(p >= float(fold.extra["threshold"]))
    return {"probability": sum(probs) / len(probs), "threshold": None,
            "thresholds": [float(f.extra["threshold"]) for f in ep.folds],
            "call": "positive" if sum(votes) > len(votes) / 2 else "negative", "folds": len(members),
            "votes": int(sum(votes))}


def _check_finite(out: dict) -> None:
    """InputError instead of "risk score: nan": the inputs are checked where they enter
    (:mod:`.clinical`), so a non-finite output means inputs the model cannot take (issue 22)."""
    values = [out.get("rfs", {}).get("risk"), *out.get("rfs", {}).get("survival", []),
              out.get("hpv", {}).get("probability")]
    if any(v is not None and not math.isfinite(v) for v in values):
        raise ModelError("the model gives no finite prediction for these inputs (NaN or infinity)", None,
                         "check the clinical values and that PET is in SUV and CT in HU")


def format_prediction(result: dict) -> str:
    """Terminal text of :meth:`OutcomePredictor.predict`'s result, warning first."""
    lines = [result["warning"], ""]
    if "rfs" in result:
        r = result["rfs"]
        lines.append(f"RFS risk score: {r['risk']:.4f}  (higher = earlier recurrence expected; "
                     f"-sum of interval survival, {r['folds']} folds)")
        for name, s in zip(r["intervals_days"], r["survival"]):
            lines.append(f"  relapse-free after interval {name:<14} days: {s:.3f}")
    if "hpv" in result:
        h = result["hpv"]
        if h.get("votes") is not None:   # the released recipe's calibrated vote
            lines.append(f"HPV probability: {h['probability']:.3f}  ({h['call']}: {h['votes']} of {h['folds']} "
                         f"folds at their own temperature and Youden threshold)")
        else:
            lines.append(f"HPV probability: {h['probability']:.3f}  ({h['call']} at threshold {h['threshold']:g}, "
                         f"{h['folds']} folds)")
    return "\n".join(lines)
