"""A picture of one outcome prediction: the interval relapse-free survival step curve and the HPV probability.

matplotlib's Agg canvas directly (no pyplot, no display), written atomically. The model's
values S_k are points at the cut points (day 0: 1), joined by straight lines (the model says
nothing about the shape within an interval); S_K of the open last interval is written as text.
The research-use warning is the figure's title.

Example (``prediction`` as :meth:`.predictor.OutcomePredictor.predict` returns it, here written by hand):
    >>> from HNTumorSegLib.outcome.survival import interval_names
    >>> prediction = {"rfs": {"risk": -2.71, "intervals_days": interval_names([769, 1357, 2626]),
    ...                       "survival": [0.93, 0.85, 0.78, 0.70]},
    ...               "hpv": {"probability": 0.64}}
    >>> write_prediction_plot(prediction, "outcome.png")
    PosixPath('outcome.png')
"""

from __future__ import annotations

import os
from pathlib import Path

from ..fileio import atomic_path


def write_prediction_plot(prediction: dict, path: str | os.PathLike) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    if "rfs" in prediction:
        rfs = prediction["rfs"]
        ends = [float(n.split(",")[1].strip(" )")) for n in rfs["intervals_days"][:-1]]
        xs, ys = [0.0, *ends], [1.0, *rfs["survival"][:len(ends)]]
        ax.plot(xs, ys, color="tab:blue", lw=2, marker="o", label=f"relapse-free at the cut points (risk {rfs['risk']:.3f})")
        ax.text(0.98, 0.85, f"no relapse in any interval (S_{len(ends) + 1}): {rfs['survival'][-1]:.2f}", transform=ax.transAxes,
                ha="right", va="top", fontsize=8)
        ax.set_xlim(0, ends[-1] * 1.15)
    if "hpv" in prediction:
        ax.text(0.98, 0.95, f"HPV probability {prediction['hpv']['probability']:.2f}", transform=ax.transAxes,
                ha="right", va="top")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("days after the end of radiotherapy")
    ax.set_ylabel("probability")
    ax.legend(loc="lower left", fontsize=8)
    fig.subplots_adjust(bottom=0.16)
    fig.suptitle("RESEARCH USE ONLY - not for clinical decisions", fontsize=9, color="tab:red")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)
