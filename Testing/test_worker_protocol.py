"""Worker events (protocol) and the progress reporter / text bar: pure Python, no processes."""

from __future__ import annotations

import io
import json
import math

import pytest

from HNTumorSegLib.progress import ProgressReporter, TextProgressBar, format_duration
from HNTumorSegLib.protocol import (ERROR_KINDS, ErrorEvent, ProgressEvent, ProtocolError, ResultEvent,
                                    parse_event)


def test_events_round_trip_as_one_json_line():
    for ev in (ProgressEvent("inference", 0.5, "fold 1/2, tile 3/8", eta_s=12.34, elapsed_s=3.0, stage_fraction=0.4),
               ResultEvent({"labels": "/o/l.nii.gz"}, {"load": 0.5}, {"device": "cpu"}),
               ErrorEvent("out_of_memory", "the GPU ran out of memory - use the CPU")):
        line = ev.to_json()
        assert "\n" not in line and json.loads(line)["event"] == ev.event
        back = parse_event(line)
        assert type(back) is type(ev)
    assert parse_event(ProgressEvent("load", 0.1, eta_s=12.34).to_json()).eta_s == 12.3


def test_protocol_json_is_strict():
    line = ProgressEvent("load", 1.7, eta_s=math.nan).to_json()
    d = json.loads(line)  # no NaN token, fraction clamped
    assert d["eta_s"] is None and d["fraction"] == 1.0
    assert set(ERROR_KINDS) >= {"bad_input", "model", "out_of_memory", "device", "internal", "crashed"}
    for bad in ("not json", "[1, 2]", '{"stage": "load"}', '{"event": "progress"}', '{"event": "nope"}',
                '{"event": "error", "kind": "oops", "message": "x"}'):
        with pytest.raises(ProtocolError):
            parse_event(bad)


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_reporter_fraction_never_goes_back_and_estimates_time_left():
    clock, events = Clock(), []
    rep = ProgressReporter(events.append, min_interval_s=0.0, clock=clock)
    rep("load", 0.0, "reading")
    clock.t = 1.0
    rep("load", 1.0)
    clock.t = 2.0
    rep("inference", 0.5, "tile 4/8")
    clock.t = 3.0
    rep("prompts", 0.0)          # an earlier stage again (e.g. a retry): fraction holds
    clock.t = 4.0
    rep("postprocess", 1.0)      # alias of clean-up
    fr = [e.fraction for e in events]
    assert fr == sorted(fr)
    assert events[2].fraction == pytest.approx(0.15 + 0.75 * 0.5)
    # issue 27: the stage's own rate (Testing/test_eta_fake_clock.py): half done the instant it began -> nothing left
    assert events[2].eta_s == pytest.approx(0.0)
    assert events[0].eta_s is None and events[-1].stage == "clean-up"
    timings = rep.finish()
    assert timings["load"] == pytest.approx(2.0) and timings["total"] == pytest.approx(4.0)


def test_reporter_throttles_within_a_stage_but_not_stage_changes():
    clock, events = Clock(), []
    rep = ProgressReporter(events.append, min_interval_s=0.1, clock=clock)
    rep("inference", 0.0)
    for i in range(1, 100):
        clock.t = i * 0.001
        rep("inference", i / 100)
    rep("inference", 1.0)
    clock.t = 0.2
    rep("write", 0.0)
    assert [e.stage_fraction for e in events] == [0.0, 1.0, 0.0]


def test_text_bar_one_line_per_stage_off_a_terminal():
    out = io.StringIO()
    bar = TextProgressBar(out, width=10)
    bar.update(ProgressEvent("inference", 0.5, "tile 1/2", eta_s=75))
    bar.update(ProgressEvent("inference", 0.6, "tile 2/2", eta_s=60))
    bar.update(ProgressEvent("write", 1.0, "", eta_s=0))
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("[#####-----]  50% inference") and "1:15 left" in lines[0]
    assert format_duration(None) == "--:--" and format_duration(3725) == "1:02:05"
