"""README's per-seed tables ("Per seed: paper, released code, ours, option", issue 28) kept in step
with the code: each row whose last column names a constant (or a function, read through
:data:`COMPUTED`) must show, as the first code span of its "ours (default)" cell, the default the
code has. A default changed in the code without its row (or the other way round) fails here.
"""

from __future__ import annotations

import enum
import importlib
import inspect
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SEEDS = ("000", "001", "002", "003", "004")
HEADER = ["choice", "paper", "released code", "ours (default)", "option", "default in code"]
#: Defaults the issue names: each must be checked by some row (a row cannot silently vanish).
REQUIRED = {
    "HNTumorSegLib.models.nnunet_folder.DEFAULT_CHECKPOINT",          # checkpoint
    "hntumorseg_training.seed002_stages.SEED002_CHECKPOINT",          # seed 002's preset
    "hntumorseg_training.crossval.DEFAULT_SPLIT",                     # seed 004's split
    "HNTumorSegLib.prompts.gradient_map.DEFAULT_BOX_OVERLAP",         # seed 003's overlap
    "HNTumorSegLib.prompts.coarse_to_fine.PET_HEAD_GRID",             # seed 002's PET head region
    "HNTumorSegLib.prompts.head_localisation.HEAD_CROP_GRID",         # seed 004's crop grid
    "HNTumorSegLib.models.segresnet_checkpoint.inputs_from_auto3dseg",   # seed 002's SegResNet PET
    "HNTumorSegLib.models.card.DEFAULT_BOX_MARGIN_VOX",               # seed 003's inference margin
    "hntumorseg_training.converters.hntsmrg.SEED003_RANDOM_MARGIN_VOX",  # seed 003's training margin
    "HNTumorSegLib.outcome.survival.NLL_CLAMP_EPS",                   # seed 004's NLL clamp
    "HNTumorSegLib.outcome.patch.PatchSpec",                          # the outcome PET input (ours)
    "HNTumorSegLib.outcome.clinical.DEFAULT_EMPTY_LABEL",             # seed 004's empty-mask MTV
}
#: Seed 002's Auto3DSeg SegResNet config as released (its hyper_parameters.yaml: CT range, PET extra modality).
SEED002_SEGRESNET = {"normalize_mode": "range", "intensity_bounds": [0.3204, 0.6318], "extra_modalities": {"image2": "pet"}}
#: Names that are not plain values: how the default is read from them.
COMPUTED = {
    "HNTumorSegLib.models.segresnet_checkpoint.inputs_from_auto3dseg":
        lambda f: f(SEED002_SEGRESNET, ["CT", "PET"])[1]["normalisation"]["type"],
    "hntumorseg_training.seed002_stages.write_seed002_ensemble":
        lambda f: inspect.signature(f).parameters["tta"].default,
    "hntumorseg_training.converters.hntsmrg.SEED003_RANDOM_MARGIN_VOX":
        lambda m: f"below {fmt(tuple(m.below))}, above {fmt(tuple(m.above))}",
    "HNTumorSegLib.outcome.patch.PatchSpec": lambda cls: cls().pet_clip_suv,
}


def fmt(value) -> str:
    """A default as README writes it: enum values, lower-case booleans, %g numbers, (a, b) tuples."""
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return f"{value:g}"
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(fmt(v) for v in value) + ")"
    return str(value)


def seed_tables(text: str) -> dict[str, list[dict[str, str]]]:
    """``{"000": [row, ...]}`` from the ``<!-- seed-table: NNN -->`` tables of README."""
    tables: dict[str, list[dict[str, str]]] = {}
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = re.fullmatch(r"<!-- seed-table: (\d{3}) -->", line.strip())
        if not m:
            continue
        rows = []
        for row in lines[i + 1:]:
            if not row.startswith("|"):
                break
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", row.strip())[1:-1]]
            rows.append(cells)
        assert rows and rows[0] == HEADER, f"seed {m.group(1)}: header {rows[:1]}, expected {HEADER}"
        assert set(rows[1][0]) <= set("-: "), f"seed {m.group(1)}: no separator row"
        tables[m.group(1)] = [dict(zip(HEADER, r)) for r in rows[2:]]
    return tables


def resolve(dotted: str):
    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(dotted)


def checked_rows():
    rows = []
    for seed, table in seed_tables(README.read_text(encoding="utf-8")).items():
        for row in table:
            ref = re.fullmatch(r"`([A-Za-z_][\w.]*)`", row["default in code"])
            if ref:
                rows.append(pytest.param(seed, row, ref.group(1), id=f"{seed}-{row['choice']}"))
    return rows


def test_every_seed_has_a_table_and_the_named_defaults_are_checked():
    tables = seed_tables(README.read_text(encoding="utf-8"))
    assert sorted(tables) == list(SEEDS)
    for seed, table in tables.items():
        assert table, f"seed {seed}: an empty table"
        for row in table:
            assert all(row.get(h) for h in HEADER), f"seed {seed}: a row with an empty cell: {row}"
    named = {p.values[2] for p in checked_rows()}
    assert REQUIRED <= named, f"README's seed tables do not check {sorted(REQUIRED - named)}"


@pytest.mark.parametrize("seed, row, dotted", checked_rows())
def test_ours_is_the_code_default(seed, row, dotted):
    value = resolve(dotted)
    if dotted in COMPUTED:
        value = COMPUTED[dotted](value)
    spans = re.findall(r"`([^`]*)`", row["ours (default)"])
    assert spans, f"seed {seed}, {row['choice']}: the 'ours (default)' cell has no `default`"
    assert spans[0] == fmt(value), (f"seed {seed}, {row['choice']}: README says `{spans[0]}`, {dotted} is "
                                    f"{fmt(value)!r}; change the row or the code")
