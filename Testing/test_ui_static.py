"""Static check of the Slicer module against its .ui: every widget the code uses exists with the expected class.

No Qt needed: the .ui is parsed as XML and HNTumorSeg.py with ``ast``. For each ``self.ui.<name>``
the test checks (1) ``<name>`` is declared in ``UI_WIDGETS`` with a class, (2) the .ui has a widget
of that name and that class, (3) every method / property / signal the code uses on it belongs to
that class's API (a table of the real Qt / CTK / MRML widget API, below).
"""

from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULE = ROOT / "HNTumorSeg" / "HNTumorSeg.py"
UI = ROOT / "HNTumorSeg" / "Resources" / "UI" / "HNTumorSeg.ui"

COMMON = {"connect", "setVisible", "setEnabled", "visible", "enabled", "toolTip", "setToolTip"}
API = {
    "QComboBox": {"addItem", "addItems", "currentData", "currentText", "currentIndex", "setCurrentIndex", "findData",
                  "findText", "setEditText", "clear", "count"},
    "qMRMLNodeComboBox": {"currentNode", "currentNodeID", "setCurrentNode", "setCurrentNodeID", "setMRMLScene"},
    "QPushButton": {"text", "setText", "click"},
    "QCheckBox": {"checked", "setChecked", "text"},
    "QLabel": {"text", "setText"},
    "QListWidget": {"clear", "addItem", "currentItem", "count", "item"},
    "QProgressBar": {"setValue", "value", "setMaximum", "setFormat"},
    "QPlainTextEdit": {"appendPlainText", "clear", "toPlainText", "setPlainText"},
    "ctkPathLineEdit": {"currentPath", "setCurrentPath"},
    "ctkCollapsibleButton": {"collapsed", "setCollapsed"},
}
SIGNALS = {
    "QComboBox": {"currentIndexChanged(int)", "currentTextChanged(QString)"},
    "qMRMLNodeComboBox": {"currentNodeChanged(vtkMRMLNode*)", "currentNodeIDChanged(QString)"},
    "QPushButton": {"clicked(bool)", "clicked()"},
    "QCheckBox": {"toggled(bool)", "clicked(bool)"},
    "QListWidget": {"itemClicked(QListWidgetItem*)", "currentRowChanged(int)"},
    "ctkPathLineEdit": {"currentPathChanged(QString)"},
}


def ui_widgets() -> dict[str, str]:
    root = ET.parse(UI).getroot()
    return {w.get("name"): w.get("class") for w in root.iter("widget")}


def declared() -> dict[str, str]:
    tree = ast.parse(MODULE.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "UI_WIDGETS" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("HNTumorSeg.py has no UI_WIDGETS dict")


def uses() -> list[tuple[str, str | None, str | None, int]]:
    """(widget name, member used or None, signal string or None, line) for every ``self.ui.<name>...``."""
    tree = ast.parse(MODULE.read_text())
    parents = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[child] = node
    out = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and node.value.attr == "ui"
                and isinstance(node.value.value, ast.Name) and node.value.value.id == "self"):
            parent = parents.get(node)
            member = parent.attr if isinstance(parent, ast.Attribute) and parent.value is node else None
            signal = None
            call = parents.get(parent) if member else None
            if member == "connect" and isinstance(call, ast.Call) and call.args and isinstance(call.args[0], ast.Constant):
                signal = call.args[0].value
            out.append((node.attr, member, signal, node.lineno))
    return out


def test_ui_file_is_valid_and_declares_custom_widgets():
    root = ET.parse(UI).getroot()
    assert root.tag == "ui" and root.find("class").text == "HNTumorSeg"
    custom = {c.find("class").text for c in root.iter("customwidget")}
    used = set(ui_widgets().values())
    qt_builtin = {c for c in used if c.startswith("Q")}
    assert used - qt_builtin <= custom, f"undeclared custom widgets: {used - qt_builtin - custom}"
    names = [w.get("name") for w in root.iter("widget")]
    assert len(names) == len(set(names)), "duplicate widget names in the .ui"


def test_every_widget_the_code_uses_exists_with_its_class():
    in_ui, decl = ui_widgets(), declared()
    used = uses()
    assert len(used) > 40  # the parse found the widget code (guards against a silently empty check)
    for name, _, _, line in used:
        assert name in decl, f"HNTumorSeg.py:{line} uses self.ui.{name}, not declared in UI_WIDGETS"
    for name, cls in decl.items():
        assert name in in_ui, f"UI_WIDGETS names {name!r}, missing from HNTumorSeg.ui"
        assert in_ui[name] == cls, f"{name!r} is a {in_ui[name]} in the .ui, the code expects {cls}"


def test_members_and_signals_belong_to_the_widget_class():
    decl = declared()
    for name, member, signal, line in uses():
        cls = decl[name]
        if member is not None:
            assert member in API[cls] | COMMON, f"HNTumorSeg.py:{line}: {cls} {name!r} has no member {member!r}"
        if signal is not None:
            assert signal in SIGNALS.get(cls, set()), f"HNTumorSeg.py:{line}: {cls} {name!r} has no signal {signal!r}"


def test_module_metadata_and_acknowledgement_cite_the_five_seeds():
    text = MODULE.read_text()
    assert 'self.parent.categories = ["Segmentation"]' in text
    tree = ast.parse(text)
    seeds = next(ast.literal_eval(n.value) for n in tree.body
                 if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "SEEDS")
    assert len(seeds) == 5
    for needle in ("STU-Net", "nnU-Net", "coarse-to-fine", "Gradient map", "Less is more"):
        assert any(needle.lower() in s.lower() for s in seeds), needle
    # the module never imports torch in Slicer's GUI process
    assert not re.search(r"^\s*(import|from)\s+torch", text, re.M)
