"""Progress reporting: turns the pipeline's ``progress(stage, fraction, message)`` calls into
whole-job fractions with a time-left estimate, and draws a text progress bar.

The pipeline reports the fraction *of the current stage* (0..1). The reporter maps it to a
fraction of the whole job with fixed stage weights, keeps it from ever going back, and
estimates the time left (:meth:`ProgressReporter.eta`). Choice (not in the seeds): inference
weighs 75 % of a job because it dominates the wall time of every model we ship; the other
stages share the rest. An unknown stage name keeps the overall fraction where it was.

The time left is the current stage's own rate (its seconds so far over its fraction, once 5 %
of it is done) plus the stages still to come at the same seconds per weight (they scale with
the image as it does; issue 27: from the whole job's rate, a skipped ``register`` stage and fast reading made an
80 x 512 x 512 run say ~36-60 s left for a 160 s inference stage;
Testing/test_eta_fake_clock.py holds it within 30 %).

Example:
    >>> events = []
    >>> p = ProgressReporter(events.append, min_interval_s=0)
    >>> p("load", 1.0, "images read")
    >>> p("inference", 0.25, "fold 1/1, tile 2/8")
    >>> round(events[-1].fraction, 2)
    0.34
"""

from __future__ import annotations

import sys
import time
from typing import Callable, TextIO

from .protocol import ProgressEvent

#: Stage order and weights (sum 1). Aliases map the names other modules may use.
#: ``register``: an unregistered mid-RT prior registered first (issue 23; skipped, it jumps by its weight).
STAGES: tuple[tuple[str, float], ...] = (
    ("load", 0.02),
    ("register", 0.08),
    ("resample", 0.03),
    ("prompts", 0.02),
    ("inference", 0.75),
    ("clean-up", 0.05),
    ("write", 0.05),
)
ALIASES = {"cleanup": "clean-up", "postprocess": "clean-up", "postprocessing": "clean-up",
           "preprocess": "resample", "preprocessing": "resample", "read": "load", "save": "write",
           "channels": "prompts", "predict": "inference"}


def _offsets(stages: tuple[tuple[str, float], ...] = STAGES) -> dict[str, tuple[float, float]]:
    out, start = {}, 0.0
    for name, w in stages:
        out[name] = (start, w)
        start += w
    return out


_OFFSETS = _offsets()


class ProgressReporter:
    """Callable ``(stage, fraction, message)`` that emits :class:`ProgressEvent` objects.

    ``emit`` receives each event; ``min_interval_s`` throttles events within one stage
    (a stage change and fraction 1.0 always go through) so a tile loop cannot flood the pipe.
    ``timings`` holds seconds spent per stage once the run is over (see :meth:`finish`).
    ``stages`` replaces the segmentation's stage weights for another long job (``register``).
    """

    def __init__(self, emit: Callable[[ProgressEvent], None], min_interval_s: float = 0.1,
                 clock: Callable[[], float] = time.monotonic,
                 stages: tuple[tuple[str, float], ...] | None = None):
        self.emit = emit
        self._offsets = _OFFSETS if stages is None else _offsets(stages)
        self.min_interval_s = min_interval_s
        self.clock = clock
        self.t0 = clock()
        self.overall = 0.0
        self.stage: str | None = None
        self._stage_t0 = self.t0
        self._last_emit = -1e9
        self.timings: dict[str, float] = {}
        self._stage_fraction = 0.0

    def _enter(self, stage: str, now: float) -> None:
        if self.stage is not None:
            self.timings[self.stage] = self.timings.get(self.stage, 0.0) + (now - self._stage_t0)
        self.stage, self._stage_t0, self._stage_fraction = stage, now, 0.0

    def eta(self, now: float) -> float | None:
        """Seconds left (module docstring): this stage's own rate, the later stages at the same seconds
        per weight; None until 5 % of a known stage is done (before that it is noise)."""
        if self.stage not in self._offsets or self._stage_fraction < 0.05:
            return None
        start, weight = self._offsets[self.stage]
        in_stage = now - self._stage_t0
        stage_left = in_stage * (1.0 - self._stage_fraction) / self._stage_fraction
        later = max(0.0, 1.0 - start - weight)
        per_weight = (in_stage / self._stage_fraction) / weight if weight > 0 else 0.0
        return stage_left + later * per_weight

    def __call__(self, stage: str, fraction: float, message: str = "") -> None:
        now = self.clock()
        stage = ALIASES.get(stage, stage)
        fraction = min(1.0, max(0.0, float(fraction)))
        changed = stage != self.stage
        if changed:
            self._enter(stage, now)
        if stage in self._offsets:
            start, weight = self._offsets[stage]
            self.overall = max(self.overall, start + weight * fraction)
            self._stage_fraction = max(self._stage_fraction, fraction)
        if not (changed or fraction >= 1.0 or now - self._last_emit >= self.min_interval_s):
            return
        self._last_emit = now
        self.emit(ProgressEvent(stage=stage, fraction=self.overall, message=message,
                                eta_s=self.eta(now), elapsed_s=now - self.t0, stage_fraction=fraction))

    def finish(self) -> dict[str, float]:
        """Close the last stage; return seconds per stage plus ``total``."""
        now = self.clock()
        self._enter("", now)
        self.stage = None
        timings = {k: round(v, 3) for k, v in self.timings.items() if k}
        timings["total"] = round(now - self.t0, 3)
        return timings


def format_duration(seconds: float | None) -> str:
    """``75`` -> ``'1:15'``; None -> ``'--:--'``."""
    if seconds is None:
        return "--:--"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class TextProgressBar:
    """Draws ``[#####-----]  42% inference  fold 1/5  0:12 left`` on one terminal line (stderr).

    On a terminal the line is redrawn in place with ``\\r``; into a file or pipe it writes
    one line per stage change, so logs stay readable.
    """

    def __init__(self, stream: TextIO | None = None, width: int = 30):
        self.stream = stream or sys.stderr
        self.width = width
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_stage: str | None = None
        self._drawn = False

    def render(self, ev: ProgressEvent) -> str:
        filled = int(round(self.width * ev.fraction))
        bar = "#" * filled + "-" * (self.width - filled)
        return (f"[{bar}] {100 * ev.fraction:3.0f}% {ev.stage:<9} {ev.message[:40]:<40} "
                f"{format_duration(ev.eta_s)} left")

    def update(self, ev: ProgressEvent) -> None:
        line = self.render(ev)
        if self.tty:
            self.stream.write("\r" + line)
            self._drawn = True
        elif ev.stage != self._last_stage:
            self.stream.write(line + "\n")
        self._last_stage = ev.stage
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
        self._drawn = False
