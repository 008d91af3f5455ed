"""Which structures of an RTSTRUCT or SEG are GTVp (label 1) and GTVn (label 2): by name, by code, or as told.

Why: a clinic's contours carry the planning system's names (``GTV_P``, ``GTVn_L2``, ``GTV-N R``,
``GTV node``), not ours, and often several structures per label (one per node level). Each
structure becomes a label by, in this order:

1. ``--structures 'GTVp=NAME[,NAME..];GTVn=NAME[,NAME..]'`` (:func:`parse_structures`): the
   names given (case-insensitive, exact) take that label; a label the option leaves out is
   still matched automatically below, among the structures the option did not name;
2. its code: a SEG segment's ``SegmentedPropertyTypeCodeSequence`` (SCT 372087000 / retired
   86049000 "Neoplasm, Primary" and DCM 130052 "GTV Primary" -> 1; SCT 14799000 "Neoplasm,
   Secondary" and DCM 130051 "GTV Nodal" -> 2: what our own SEG and RTSTRUCT export write,
   :mod:`HNTumorSegLib.export.codes`), or an RTSTRUCT ROI's ``RTROIIdentificationCodeSequence``
   (DCM 130052 / 130051);
3. its name, read case-insensitively after every run of characters other than letters and
   digits becomes one ``_`` (``GTV-N R`` -> ``gtv_n_r``), against :data:`NAME_PATTERNS`:

   * GTVp: ``gtv`` + ``p``, ``prim``, ``primary``, ``t``, ``tumor``/``tumour`` + an optional
     number: GTVp, GTV_P, GTV-P, GTVp1, GTV_P_2, GTV_Primary, GTVt;
   * GTVn: ``gtv`` + ``n``, ``node(s)``, ``nodal``, ``ln``, ``lymph node(s)`` + any number of
     side/level parts (``l``, ``r``, ``left``, ``right``, ``lt``, ``rt``, ``bilat``, ``level``,
     then a level number 1-7 or I-VII with an optional a/b, or a plain number): GTVn, GTV_N,
     GTV_N_L2, GTVn_R, GTVn_L2, GTV node, GTV-N R, GTVn_Level_IIa, GTVn3.

   Anything else never matches: a margin or derived structure (``GTV_P_expanded``,
   ``GTVp+5mm``, ``GTVp_ring``), a CTV, PTV or ITV, a bare ``GTV`` (which label?), an organ.
   An RTSTRUCT ROI whose ``RTROIInterpretedType`` says CTV, PTV or ITV is not matched by name
   either. A code and a name that disagree are a double match.

Several structures per label are merged (``GTVn_L2`` + ``GTVn_R`` -> label 2). Nothing matched,
a structure matched by two labels, or a ``--structures`` name that is not there: an
:class:`InputError` (exit 2) with one line listing the structures found (and a "did you mean").

Example:
    >>> label_of_name("GTV_N_L2"), label_of_name("GTV-P"), label_of_name("GTV_P_expanded")
    (2, 1, None)
    >>> parse_structures("GTVp=Tumour; gtvn=LN_L2,LN_R")
    {1: ['Tumour'], 2: ['LN_L2', 'LN_R']}
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .. import LABEL_NAMES
from ..errors import InputError
from ..export.codes import RETIRED_TYPES, RT_TYPES, TYPES
from ..vocab import NonGtvTarget, did_you_mean

_LEVEL = r"(?:\d{1,2}|i{1,3}|iv|v|vi{1,2})[ab]?"
_SIDE_PART = rf"(?:l|r|lt|rt|left|right|bilat|bilateral|level|lev)?_?{_LEVEL}|l|r|lt|rt|left|right|bilat|bilateral"
#: label -> the pattern its normalised names match (see the module docstring; the one place they are written)
NAME_PATTERNS = {
    1: re.compile(r"^gtv_?(?:p|prim|primary|t|tumou?r)(?:_?\d{1,2})?$"),
    2: re.compile(rf"^gtv_?(?:n|nodes?|nodal|ln|lymph_?nodes?)(?:_?(?:{_SIDE_PART}))*$"),
}
#: code value -> label: the SEG type codes and RT target codes our export writes (one definition, there)
CODE_LABELS = {**{code[1]: label for table in (TYPES, RT_TYPES) for label, code in table.items()}, **RETIRED_TYPES}


def normalise(name: str) -> str:
    """``"GTV-N R"`` -> ``"gtv_n_r"``: lower case, every run of other characters one ``_``."""
    return re.sub(r"[^a-z0-9]+", "_", str(name).strip().lower()).strip("_")


def label_of_name(name: str) -> int | None:
    """1 (GTVp), 2 (GTVn) or None for a structure name (:data:`NAME_PATTERNS`)."""
    key = normalise(name)
    for label, pattern in NAME_PATTERNS.items():
        if pattern.match(key):
            return label
    return None


def parse_structures(text: str | None) -> dict[int, list[str]]:
    """``'GTVp=A,B;GTVn=C'`` -> ``{1: ['A', 'B'], 2: ['C']}`` (``--structures``); ``None`` -> ``{}``."""
    if text is None or not str(text).strip():
        return {}
    out: dict[int, list[str]] = {}
    by_name = {v.lower(): k for k, v in LABEL_NAMES.items()}
    for part in str(text).split(";"):
        if not part.strip():
            continue
        key, sep, names = part.partition("=")
        label = by_name.get(key.strip().lower())
        if not sep or label is None:
            hint = did_you_mean(key.strip(), list(LABEL_NAMES.values())) if sep else ""
            raise InputError(f"--structures part {part.strip()!r} is not GTVp=NAME[,NAME..] or GTVn=NAME[,NAME..]{hint}",
                             None, "write e.g. --structures 'GTVp=GTV_Primary;GTVn=GTV_LN_L2,GTV_LN_R'")
        listed = [n.strip() for n in names.split(",") if n.strip()]
        if not listed or label in out:
            raise InputError(f"--structures gives {LABEL_NAMES[label]} {'twice' if label in out else 'no name'}", None,
                             f"give {LABEL_NAMES[label]}=NAME[,NAME..] once")
        out[label] = listed
    return out


@dataclass
class Structure:
    """One structure of an RTSTRUCT (an ROI) or a SEG (a segment), as the matching sees it."""

    key: int                     # ROI number or segment number
    name: str
    codes: list[str] = field(default_factory=list)   # code values of its type / identification codes
    interpreted_type: str = ""   # RTSTRUCT RTROIInterpretedType

    def auto_labels(self) -> set[int]:
        """The labels its codes and name give (two labels: a double match)."""
        labels = {CODE_LABELS[c] for c in self.codes if c in CODE_LABELS}
        by_name = label_of_name(self.name)
        if by_name is not None and NonGtvTarget.lookup(self.interpreted_type) is None:
            labels.add(by_name)
        return labels


def _listing(structures: list[Structure]) -> str:
    names = ", ".join(repr(s.name) for s in structures) or "none"
    return f"structures found: {names}"


def assign_labels(structures: list[Structure], chosen: dict[int, list[str]], path, what: str) -> dict[int, int]:
    """Structure key -> label (1 or 2) for every structure that becomes one (module docstring)."""
    out: dict[int, int] = {}
    named: dict[str, int] = {}
    by_lower: dict[str, list[Structure]] = {}
    for s in structures:
        by_lower.setdefault(s.name.strip().lower(), []).append(s)
    fix = "name them with --structures 'GTVp=NAME[,NAME..];GTVn=NAME[,NAME..]'"
    for label, names in chosen.items():
        for n in names:
            found = by_lower.get(n.lower())
            if not found:
                hint = did_you_mean(n, [s.name for s in structures])
                raise InputError(f"--structures names {n!r}{hint}, which the {what} does not hold; "
                                 f"{_listing(structures)}", path, "give names of the structures listed")
            if n.lower() in named and named[n.lower()] != label:
                raise InputError(f"structure {n!r} is given for both GTVp and GTVn; {_listing(structures)}",
                                 path, "give each structure to one label in --structures")
            named[n.lower()] = label
            for s in found:
                out[s.key] = label
    for s in structures:
        if s.key in out or s.name.strip().lower() in named:
            continue
        labels = {lab for lab in s.auto_labels() if lab not in chosen}
        if len(labels) > 1:
            raise InputError(f"structure {s.name!r} matches both GTVp and GTVn (by its name and its code); "
                             f"{_listing(structures)}", path, fix)
        if labels:
            out[s.key] = labels.pop()
    if not out:
        raise InputError(f"no structure of the {what} is recognised as GTVp or GTVn; {_listing(structures)}", path, fix)
    return out
