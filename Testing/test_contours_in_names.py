"""Which structures become GTVp / GTVn (issue 23 part 1): the name table, codes, ``--structures``, and the refusals.

The names a clinic's planning system writes (``GTV_P``, ``GTVn_L2``, ``GTV-N R``, ``GTV node``)
must be recognised; derived and margin structures (``GTV_P_expanded``, ``GTVp+5mm``), CTV/PTV
and a bare ``GTV`` must never be. A name and a code that disagree, a name given for both labels,
a ``--structures`` name that is not there and nothing recognised at all are each one line that
lists the structures found (exit 2 on the command line: :class:`InputError`).
"""

from __future__ import annotations

import pytest

from HNTumorSegLib.dicom.structures import Structure, assign_labels, label_of_name, parse_structures
from HNTumorSegLib.errors import InputError

GTVP = ["GTVp", "GTV_P", "GTV-P", "GTVp1", "GTV_P_2", "GTV_Primary", "gtv primary", "GTVt", "GTV_Tumour"]
GTVN = ["GTVn", "GTV_N", "GTV_N_L2", "GTVn_R", "GTVn_L2", "GTV node", "GTV-N R", "GTV_Nodes", "GTVn_Level_IIa",
        "GTV_LN_R2", "GTVn3", "GTV_N_bilat"]
NEVER = ["GTV", "GTV_P_expanded", "GTVp+5mm", "GTVp_ring", "GTVn_expanded", "CTV_P", "CTVn", "PTV_70", "PTVp",
         "ITV", "Brainstem", "Parotid_L", "GTV_P-PTV", "zGTVp_opt", "GTVp_minus_3mm"]


@pytest.mark.parametrize("name", GTVP)
def test_primary_names(name):
    assert label_of_name(name) == 1


@pytest.mark.parametrize("name", GTVN)
def test_nodal_names(name):
    assert label_of_name(name) == 2


@pytest.mark.parametrize("name", NEVER)
def test_names_that_never_match(name):
    assert label_of_name(name) is None


def test_structures_option_parses_and_refuses():
    assert parse_structures("GTVp=Tumour ; GTVn = LN_L2, LN_R") == {1: ["Tumour"], 2: ["LN_L2", "LN_R"]}
    assert parse_structures(None) == {} and parse_structures("  ") == {}
    with pytest.raises(InputError, match=r"did you mean GTVp\?"):
        parse_structures("GTVpp=A")
    with pytest.raises(InputError, match="GTVp twice"):
        parse_structures("GTVp=A;GTVp=B")
    with pytest.raises(InputError, match="not GTVp=NAME"):
        parse_structures("A,B")


def _set(*names, codes=None, types=None):
    codes, types = codes or {}, types or {}
    return [Structure(i + 1, n, codes.get(n, []), types.get(n, "")) for i, n in enumerate(names)]


def test_several_structures_per_label_merge_and_others_are_left_out():
    found = _set("GTV_P", "GTVn_L2", "GTVn_R", "PTV_70", "Brainstem")
    assert assign_labels(found, {}, "rt.dcm", "RTSTRUCT") == {1: 1, 2: 2, 3: 2}


def test_codes_decide_and_disagreeing_name_is_a_double_match():
    found = _set("lesion A", "lesion B", codes={"lesion A": ["372087000"], "lesion B": ["130051"]})
    assert assign_labels(found, {}, "seg.dcm", "SEG") == {1: 1, 2: 2}
    clash = _set("GTVp", codes={"GTVp": ["14799000"]})   # named primary, coded "Neoplasm, Secondary"
    with pytest.raises(InputError) as err:
        assign_labels(clash, {}, "seg.dcm", "SEG")
    assert "matches both GTVp and GTVn" in str(err.value) and "structures found: 'GTVp'" in str(err.value)


def test_interpreted_type_ctv_ptv_is_never_a_gtv():
    found = _set("GTV_P", "GTVn", types={"GTV_P": "PTV", "GTVn": "GTV"})
    assert assign_labels(found, {}, "rt.dcm", "RTSTRUCT") == {2: 2}


def test_structures_override_and_keep_the_other_label_automatic():
    found = _set("Tumour_70", "GTVn_R", "GTV_P")
    # GTVp named explicitly (GTV_P is then no longer taken automatically), GTVn still by its name
    assert assign_labels(found, {1: ["tumour_70"]}, "rt.dcm", "RTSTRUCT") == {1: 1, 2: 2}


def test_nothing_matched_lists_the_structures():
    with pytest.raises(InputError) as err:
        assign_labels(_set("PTV_70", "Brainstem", "GTV"), {}, "rt.dcm", "RTSTRUCT")
    line = err.value.one_line()
    assert "\n" not in line and "no structure of the RTSTRUCT" in line
    assert "'PTV_70', 'Brainstem', 'GTV'" in line and "--structures" in line


def test_one_structure_for_two_labels_and_a_missing_name_are_refused():
    found = _set("GTV_P", "GTVn_R")
    with pytest.raises(InputError, match="given for both GTVp and GTVn"):
        assign_labels(found, {1: ["GTV_P"], 2: ["gtv_p"]}, "rt.dcm", "RTSTRUCT")
    with pytest.raises(InputError) as err:
        assign_labels(found, {2: ["GTVn_RR"]}, "rt.dcm", "RTSTRUCT")
    assert "did you mean GTVn_R?" in str(err.value) and "structures found" in str(err.value)
