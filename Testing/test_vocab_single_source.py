"""One definition of each word (issue 21): every fixed vocabulary lives in HNTumorSegLib/vocab.py.

The main check reads the whole library with ``ast`` and fails when a choice list - a module-level
tuple / list / set / frozenset of word-like string literals, or an argparse ``choices=[...]`` of
them - is written anywhere but vocab.py. A list whose name says it is the *shape* of a record
(``..._KEYS``, ``..._COLUMNS``, ``..._FIELDS``, ``..._KEYWORDS``, ``_REQUIRED``: every element is
present at once, none is chosen) is not a vocabulary; the few remaining exceptions are listed in
:data:`NOT_A_VOCABULARY`, each with the reason. The other tests pin what the words mean: the
"did you mean" of each vocabulary, error kinds derived from the exception classes and accepted
by the protocol, the named exit codes, one spelling per network output, and the two "context"s.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import HNTumorSegLib
from HNTumorSegLib import errors
from HNTumorSegLib.errors import HNTumorSegError, InputError
from HNTumorSegLib.protocol import ERROR_KINDS, USER_ERROR_KINDS, ErrorEvent, ProtocolError, parse_event
from HNTumorSegLib.vocab import (ALIASES, AccumulateOn, Architecture, CaseFileKind, DerivedChannel, Endpoint,
                                 ErrorKind, ExportFormat, FoldAverage, HoleStyle, HpvLoss, ImportForm, InputRole,
                                 Layout, LicenceTerms, ModelKind, NetworkOutput, PetUnit, RegionTiling, Timepoint,
                                 Uncertainty, VocabEnum)

LIB = Path(HNTumorSegLib.__file__).resolve().parent
WORD = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]*$")
#: Names that describe a record's shape (all present at once), not a choice among values.
SHAPE_NAME = re.compile(r"(^__all__$|KEYS$|COLUMNS$|FIELDS$|KEYWORDS$|_REQUIRED$)")

#: module-level lists of words that are not vocabularies, and why (keep this short).
NOT_A_VOCABULARY = {
    ("export/_dicom_source.py", "TYPE2"): "DICOM attribute keywords every object carries (the standard's names)",
    ("batch/resume.py", "NOT_IN_FINGERPRINT"): "SegmentRequest field names left out of the resume key (a record's shape)",
    ("folds.py", "(_ALL, _FIRST, _LIST)"): "the forms of a parsed Folds; folds.py is the word's one home "
                                           "(docs/design.md Words table)",
    ("models/safe_load.py", "_NUMERIC_DTYPE_CLASSES"): "numpy's class names a safe unpickler admits",
    ("outcome/clinical.py", "IMAGING"): "the imaging covariates' column names (a record's shape)",
    ("phantoms/anatomy.py", "TISSUE_NAMES"): "the phantom's tissue labels by index (a lookup table)",
    ("phantoms/writers.py", "HECKTOR_CENTRES"): "the HECKTOR centres' codes that synthetic case names copy",
}


def _is_word_list(node: ast.AST) -> bool:
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id in ("tuple", "list", "set", "frozenset") and len(node.args) == 1):
        return _is_word_list(node.args[0])
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return len(node.elts) >= 2 and all(isinstance(e, ast.Constant) and isinstance(e.value, str)
                                           and WORD.match(e.value) for e in node.elts)
    return False


def choice_lists(source: str, rel: str) -> list[tuple[str, str, int]]:
    """``(rel, name, line)`` of every choice list written in ``source`` (module docstring)."""
    tree = ast.parse(source)
    found = []
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None and _is_word_list(node.value):
            target = node.targets[0] if isinstance(node, ast.Assign) else node.target
            name = ast.unparse(target)
            if not SHAPE_NAME.search(name):
                found.append((rel, name, node.lineno))
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "choices" and _is_word_list(node.value):
            found.append((rel, "choices=", node.value.lineno))
    return found


def test_no_choice_list_outside_vocab():
    found = []
    for path in sorted(LIB.rglob("*.py")):
        rel = path.relative_to(LIB).as_posix()
        if rel == "vocab.py":
            continue
        found += [f"HNTumorSegLib/{r}:{line}: {name}" for r, name, line in choice_lists(path.read_text("utf-8"), rel)
                  if (r, name) not in NOT_A_VOCABULARY]
    assert not found, ("a choice list written outside HNTumorSegLib/vocab.py - make it a VocabEnum there and use "
                       "Enum.values() / Enum.parse() here (or, if it is truly not a vocabulary - a record's shape, "
                       "an outside standard's names - add it to NOT_A_VOCABULARY with the reason):\n"
                       + "\n".join(found))


def test_the_allow_list_has_no_stale_entry():
    present = set()
    for path in LIB.rglob("*.py"):
        rel = path.relative_to(LIB).as_posix()
        present |= {(r, name) for r, name, _ in choice_lists(path.read_text("utf-8"), rel)}
    assert set(NOT_A_VOCABULARY) <= present, sorted(set(NOT_A_VOCABULARY) - present)


@pytest.mark.parametrize("source, name", [
    ('LAYOUTS = ("hntsmrg", "hecktor", "folder", "dicom")\n', "LAYOUTS"),
    ('HOLE_MODES = ["nested", "keyhole"]\n', "HOLE_MODES"),
    ('OUTPUTS: tuple = ("softmax", "sigmoid")\n', "OUTPUTS"),
    ('_ALIASES = frozenset({"grad", "gradient_map"})\n', "_ALIASES"),
    ('def f(p):\n    p.add_argument("--layout", choices=["hntsmrg", "dicom"])\n', "choices="),
])
def test_the_checker_catches_a_planted_choice_list(source, name):
    assert [n for _, n, _ in choice_lists(source, "x.py")] == [name]


@pytest.mark.parametrize("source", [
    'COLUMNS = ("case", "DSC")\n', 'FINGERPRINT_KEYS = ("task", "model")\n', '__all__ = ["a", "b"]\n',
    'SUFFIXES = (".nii.gz", ".nii")\n', 'LAYOUTS = Layout.values()\n', 'ONE = ("only",)\n',
])
def test_the_checker_leaves_shapes_and_derived_lists_alone(source):
    assert choice_lists(source, "x.py") == []


# ---- every vocabulary: parse, did you mean ------------------------------------------------------

NEW_WORDS = [  # (enum, a typo, the suggestion, how the message names it); test_vocab.py tests them
    (Layout, "hntmrg", "hntsmrg", "layout"), (ModelKind, "nnuent", "nnunet", "model kind"),
    (InputRole, "pt", "PET", "input role"), (DerivedChannel, "gradiant", "gradient", "derived channel"),
    (ErrorKind, "bad-inptu", "bad_input", "error kind"), (Uncertainty, "entropi", "entropy", "uncertainty"),
    (FoldAverage, "logit", "logits", "fold average"), (RegionTiling, "grd", "grid", "region tiling"),
    (AccumulateOn, "devices", "device", "accumulate_on"), (HoleStyle, "keyhol", "keyhole", "hole style"),
    (NetworkOutput, "sigmoid", "sigmoid_regions", "model output"), (Timepoint, "midrtt", "midRT", "timepoint"),
    (CaseFileKind, "lable", "label", "file kind"), (Architecture, "stunett", "STUNet", "architecture"),
    (LicenceTerms, "noncommercial", "non-commercial", "licence terms"), (PetUnit, "suvs", "SUV", "PET unit"),
    (Endpoint, "hpvs", "hpv", "endpoint"), (HpvLoss, "focall", "focal", "HPV loss"),
    (ExportFormat, "dicomseg", "dicom_seg", "export format"),
    (ImportForm, "segresnet-checkpoint", "segresnet-checkpoints", "import form"),
]


# test_vocab.py::test_typo_gives_did_you_mean checks each typo's one line and its "did you mean".


@pytest.mark.parametrize("enum", sorted({w[0] for w in NEW_WORDS}, key=lambda e: e.__name__),
                         ids=lambda e: e.__name__)
def test_every_value_of_every_vocabulary_reads_back_in_any_case(enum):
    for member in enum:
        assert enum.parse(member.value.upper()) is member and enum.parse(f" {member.value.lower()} ") is member
        assert enum.lookup(member.value.swapcase()) is member


def test_one_alias_table_read_by_the_model_declaration_and_the_slicer_panel():
    from HNTumorSegLib.models.declaration import infer_declaration
    from HNTumorSegLib.scene.panel_params import NODE_ROLES

    assert InputRole.parse("T2w") is InputRole.T2 and InputRole.parse("MRI") is InputRole.T2
    assert DerivedChannel.parse("gradient_map") is DerivedChannel.GRADIENT
    for table, aliases in ALIASES.items():        # every alias names a real value of its vocabulary
        enum = getattr(importlib.import_module("HNTumorSegLib.vocab"), table)
        assert all(enum.lookup(alias) is not None and alias == alias.lower() for alias in aliases)
    decl = infer_declaration({"0": "t2w", "1": "Gradient-Map"})
    assert decl.channels[0].input == InputRole.T2 and decl.channels[1].derived == DerivedChannel.GRADIENT
    assert NODE_ROLES == {"t2": "T2", "ct": "CT", "pet": "PET"}


# ---- error kinds: derived from the exception classes, accepted by the protocol --------------------

def _every_error_class() -> set[type]:
    """Import every module of the library (a missing optional dependency skips that module) and
    collect every subclass of HNTumorSegError."""
    for info in pkgutil.walk_packages(HNTumorSegLib.__path__, "HNTumorSegLib."):
        if info.name.endswith("__main__"):
            continue
        try:
            importlib.import_module(info.name)
        except ModuleNotFoundError as exc:   # slicer, ray ...: not ours
            assert not str(exc.name).startswith("HNTumorSegLib"), exc
    seen, todo = set(), [HNTumorSegError]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            if sub not in seen:
                seen.add(sub)
                todo.append(sub)
    return seen


def test_error_kind_is_the_kinds_of_the_exception_classes():
    classes = _every_error_class()
    assert set(ErrorKind.values()) == {cls.kind for cls in classes}
    for cls in classes:   # each word is written in errors.py only; elsewhere a class inherits it
        if cls.__module__ != "HNTumorSegLib.errors":
            assert "kind" not in vars(cls), f"{cls.__module__}.{cls.__name__} defines its own kind"
    from HNTumorSegLib.dicom.send import SendError
    from HNTumorSegLib.fileio import PublishingStopped

    assert SendError.kind == ErrorKind.SEND and PublishingStopped.kind == ErrorKind.CANCELLED


@pytest.mark.parametrize("kind", list(ErrorKind), ids=ErrorKind.values())
def test_the_protocol_accepts_every_error_kind(kind):
    event = parse_event(ErrorEvent(kind.value, "one line").to_json())
    assert isinstance(event, ErrorEvent) and event.kind == kind.value
    assert event.user_fixable == issubclass(kind.exception_class, InputError) == (kind.value in USER_ERROR_KINDS)
    assert kind.exit_code == (errors.EXIT_BAD_INPUT if event.user_fixable else errors.EXIT_INTERNAL)
    assert ERROR_KINDS == ErrorKind.values()


def test_a_send_error_travels_as_kind_send_and_comes_back_as_a_send_error():
    from HNTumorSegLib.dicom.send import SendError
    from HNTumorSegLib.worker import error_event
    from HNTumorSegLib.worker_cli import raise_for_failure

    event = error_event(SendError("PACS@host:104 refused the association", None, "check the AE title"))
    assert event.kind == "send" and event.user_fixable
    with pytest.raises(SendError, match="refused the association"):
        raise_for_failure(parse_event(event.to_json()))
    with pytest.raises(ProtocolError, match="did you mean crashed"):
        ErrorEvent("crash", "x")


#: where an error kind is written or compared (issue 21: the runner, the session, the worker, childproc)
KIND_MODULES = ("runner.py", "worker.py", "childproc.py", "session/client.py", "session/server.py",
                "session/messages.py")


def bare_kinds(source: str, rel: str) -> list[str]:
    """``ErrorEvent("crashed", ...)`` and ``ev.kind == "internal"`` / ``kind in ("internal", ...)``:
    an error kind spelled as a literal instead of its class's ``kind`` (``WorkerCrashed.kind``)."""
    kinds, found = set(ErrorKind.values()), []
    for node in ast.walk(ast.parse(source)):
        literals: list[ast.AST] = []
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "ErrorEvent":
            literals = node.args[:1] + [k.value for k in node.keywords if k.arg == "kind"]
        elif isinstance(node, ast.Compare) and any(isinstance(side, ast.Attribute) and side.attr == "kind"
                                                   for side in [node.left, *node.comparators]):
            for side in [node.left, *node.comparators]:
                literals += side.elts if isinstance(side, (ast.Tuple, ast.List, ast.Set)) else [side]
        found += [f"{rel}:{node.lineno}: {lit.value!r}" for lit in literals
                  if isinstance(lit, ast.Constant) and lit.value in kinds]
    return found


def test_error_kinds_are_the_classes_kinds_never_bare_words():
    """``ErrorEvent(WorkerCrashed.kind, ...)``, not ``ErrorEvent("crashed", ...)``: the word is
    written once, in its class (errors.py), so a typo or a renamed kind fails at import, not
    only when that ending runs."""
    found = []
    for rel in KIND_MODULES:
        found += bare_kinds((LIB / rel).read_text("utf-8"), rel)
    assert not found, "an error kind written bare (use the exception class's .kind):\n" + "\n".join(found)


def test_the_kind_check_catches_bare_words():
    sample = ('ev = ErrorEvent("crashed", "x")\nif ev.kind in ("internal", "out_of_memory"): pass\n'
              'if final.kind == "cancelled": pass\nok = ErrorEvent(WorkerCrashed.kind, "x")\n'
              'state = "cancelled"\n')
    assert [line.split(": ")[1] for line in bare_kinds(sample, "x.py")] == [
        "'crashed'", "'internal'", "'out_of_memory'", "'cancelled'"]


# ---- exit codes: the named constants, never bare numbers ----------------------------------------

EXIT_CALLS = {"exit", "_exit", "SystemExit"}
EXIT_FUNCTIONS = {"main", "run", "serve", "_fail", "run_worker"}


def _bare_exit_numbers(source: str, rel: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in EXIT_CALLS and node.args and isinstance(node.args[0], ast.Constant) \
                    and isinstance(node.args[0].value, int):
                found.append(f"{rel}:{node.lineno}: {ast.unparse(node)}")
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add) and any(
                isinstance(side, ast.Constant) and side.value == 128 for side in (node.left, node.right)):
            found.append(f"{rel}:{node.lineno}: {ast.unparse(node)} (use errors.exit_for_signal)")
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in EXIT_FUNCTIONS:
            for ret in ast.walk(node):
                if not isinstance(ret, ast.Return) or ret.value is None:
                    continue
                values = [ret.value.body, ret.value.orelse] if isinstance(ret.value, ast.IfExp) else [ret.value]
                if any(isinstance(v, ast.Constant) and type(v.value) is int and v.value != 0 for v in values):
                    found.append(f"{rel}:{ret.lineno}: {ast.unparse(ret)} in {node.name}()")
    return found


def test_exit_codes_are_named():
    found = []
    for path in sorted(LIB.rglob("*.py")):
        rel = path.relative_to(LIB).as_posix()
        if rel != "errors.py":
            found += _bare_exit_numbers(path.read_text("utf-8"), rel)
    assert not found, "bare exit numbers (use EXIT_BAD_INPUT, EXIT_ENVIRONMENT, EXIT_INTERNAL, exit_for_signal):\n" \
        + "\n".join(found)


def test_the_exit_check_catches_bare_numbers():
    sample = ("import sys, os\ndef main():\n    return 2\ndef run(failed):\n    return 1 if failed else EXIT_OK\n"
              "def f():\n    sys.exit(1)\n    os._exit(128 + 15)\n    raise SystemExit(130)\n    return 1\n")
    assert len(_bare_exit_numbers(sample, "x.py")) == 5   # os._exit(128 + 15) counts once, as the sum; f is no exit
    assert errors.exit_for_signal(2) == 130 and errors.exit_for_signal(15) == 143


# ---- one spelling per network output, one hole style list, one device parser --------------------

def test_network_output_has_one_spelling_inside_inference_too():
    from HNTumorSegLib.inference.ensemble import EnsembleMember

    member = EnsembleMember([lambda x: x], output="sigmoid_regions")
    assert member.output is NetworkOutput.SIGMOID_REGIONS
    with pytest.raises(InputError, match="did you mean sigmoid_regions"):
        EnsembleMember([lambda x: x], output="sigmoid")


def test_hole_styles_and_layouts_come_from_vocab():
    import numpy as np

    from HNTumorSegLib import datasets
    from HNTumorSegLib.cli import build_parser
    from HNTumorSegLib.export import contours

    assert not hasattr(contours, "HOLE_MODES")
    with pytest.raises(InputError, match="did you mean keyhole"):
        contours.island_contours(np.ones((3, 3)), holes="keyhol")
    assert datasets.LAYOUTS == Layout.values()
    with pytest.raises(InputError, match="did you mean hntsmrg"):
        datasets.prediction_path("hntmrg", "out", "case_1", "prert")
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices
    layout = next(a for a in sub["batch"]._actions if a.dest == "layout")
    assert tuple(layout.choices) == Layout.values() == ("hntsmrg", "hecktor", "folder", "dicom")


def test_import_forms_come_from_vocab(tmp_path):
    """``models import``'s forms were a bare list of strings in models/importer.py (issue 21)."""
    from HNTumorSegLib.models.importer import find_models

    (tmp_path / "uw" / "model_0.pt").parent.mkdir()
    (tmp_path / "uw" / "model_0.pt").write_bytes(b"")
    assert [(f.folder.name, f.form) for f in find_models(tmp_path)] == [("uw", ImportForm.SEGRESNET_CHECKPOINTS)]
    text = (LIB / "models" / "importer.py").read_text("utf-8")
    assert not any(f'"{form}"' in text for form in ImportForm.values())


def test_devices_are_parsed_by_vocab_only():
    pytest.importorskip("torch")
    from HNTumorSegLib.errors import DeviceError
    from HNTumorSegLib.inference.devices import resolve_device

    assert resolve_device(" CPU ").type == "cpu"
    with pytest.raises(DeviceError, match=r"unknown device 'cdua' \(did you mean cuda\?\)"):
        resolve_device("cdua")


# ---- the two "context"s, the head-crop size, the refine key --------------------------------------

def test_context_and_crop_surround_are_two_named_numbers_each_defined_once():
    from HNTumorSegLib.models.declaration import SEED004_CROP
    from HNTumorSegLib.pipeline.tasks import REGION_CONTEXT_MM
    from HNTumorSegLib.prompts import boxes, extents, head_localisation

    assert (REGION_CONTEXT_MM, extents.BOX_CROP_SURROUND_MM) == (5.0, 20.0)
    for fn, param in ((head_localisation.crop_around_boxes, "surround_mm"),
                      (head_localisation.region_from_boxes, "surround_mm"), (boxes.union_region, "surround_mm")):
        assert inspect.signature(fn).parameters[param].default is extents.BOX_CROP_SURROUND_MM
    assert inspect.signature(head_localisation.locate_head).parameters["crop_mm"].default is extents.HEAD_CROP_MM
    assert tuple(SEED004_CROP["size_mm"]) == extents.HEAD_CROP_MM
    assert SEED004_CROP["spacing_mm"] == extents.HEAD_CROP_SPACING_MM
    for rel in ("prompts/head_localisation.py", "models/declaration.py", "pipeline/tasks.py", "prompts/boxes.py"):
        text = (LIB / rel).read_text("utf-8")
        assert "310.0" not in text and "context_mm: float = 20" not in text and "surround_mm: float = 20" not in text


def test_refine_keys_are_the_fields_and_the_old_key_still_reads():
    from HNTumorSegLib.pipeline.refine import REFINE_KEYS, RefineSpec

    spec = RefineSpec.from_dict({"base_labels_path": "a.nii.gz", "boxes": ["GTVn-2"]})
    assert set(spec.to_dict()) == set(REFINE_KEYS) == {"base_labels_path", "boxes", "box_only"}
    assert RefineSpec.from_dict(spec.to_dict()) == spec
    assert RefineSpec.from_dict({"base_labels": "a.nii.gz", "boxes": ["GTVn-2"]}) == spec   # old request lines
    with pytest.raises(InputError, match="both"):
        RefineSpec.from_dict({"base_labels": "a.nii.gz", "base_labels_path": "b.nii.gz", "boxes": ["GTVn-2"]})


def test_every_vocabulary_is_a_vocab_enum_with_a_docstring():
    import HNTumorSegLib.vocab as vocab

    enums = [v for v in vars(vocab).values() if isinstance(v, type) and issubclass(v, VocabEnum) and len(v)]
    assert ErrorKind in enums and len(enums) >= 25
    assert all((e.__doc__ or "").strip() for e in enums)
