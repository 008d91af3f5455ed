"""The panel's first hour without a model (issue 26, items 1 and 2): where to get one, and Apply offers it.

Scene logic only (``HNTumorSegLib.scene.model_choice``; the widget shows what it returns): with no
model of the task installed the info line says where to get one; Apply with a model not installed
stays pressable and offers its Download (licence named; size before the first byte) or Import,
instead of staying disabled. Catalogues are written into the test folder, the cache is empty.
"""

from __future__ import annotations

import json

import pytest

from HNTumorSegLib.scene.model_choice import apply_offer, model_box_state, no_model_installed_text

HUB = {"repo_id": "someone/midrt-model", "revision": "ab" * 20, "folder": "nnUNetTrainer__nnUNetPlans__3d_fullres"}


@pytest.fixture
def catalogue(tmp_path):
    """A mid-RT hub model (Download) and a pre-RT model shared by hand (Import); nothing bundled."""
    path = tmp_path / "models.json"
    path.write_text(json.dumps({"models": [
        {"id": "midrt-hub", "title": "m", "task": "midrt", "inputs": ["T2", "gradient_map"], "kind": "nnunet",
         "licence": "Apache-2.0", "citation": "c", "hub": HUB},
        {"id": "prert-manual", "title": "p", "task": "prert", "inputs": ["T2"], "kind": "nnunet",
         "licence": "CC-BY-NC-4.0", "citation": "c", "licence_terms": "non-commercial",
         "manual": {"page": "https://example.org/release", "clicks": "Download the zip"}}]}))
    return path, tmp_path / "cache"


def test_no_model_installed_says_where_to_get_one(catalogue):
    cat, cache = catalogue
    text = no_model_installed_text("midrt", cache, cat)
    assert text.startswith("No mid-RT model is installed yet.")
    assert "choose midrt-hub in the list and press Download" in text and "Browse..." in text
    assert "README section 1" in text
    prert = no_model_installed_text("prert", cache, cat)
    assert "prert-manual" in prert and "Import" in prert
    state = model_box_state("", "midrt", cache, cat)     # the empty box's info line carries it too
    assert "No mid-RT model is installed yet" in state.info_text
    assert no_model_installed_text("midrt") == ""        # the real catalogue: the bundled demo is installed


def test_apply_offers_the_download_instead_of_staying_disabled(catalogue):
    cat, cache = catalogue
    state = model_box_state("midrt-hub  [not installed: Download]", "midrt", cache, cat)
    assert not state.can_run and state.offer == "download" and state.apply_enabled
    offer = apply_offer("midrt-hub  [not installed: Download]", "midrt", cache, cat)
    assert offer is not None and (offer.model_id, offer.action) == ("midrt-hub", "download")
    assert "Licence: Apache-2.0" in offer.question and "size is shown before the first byte" in offer.question
    empty = apply_offer("", "midrt", cache, cat)          # nothing chosen, nothing installed: the first download
    assert empty is not None and empty.model_id == "midrt-hub"


def test_apply_offers_the_import_for_a_model_shared_by_hand(catalogue):
    cat, cache = catalogue
    state = model_box_state("prert-manual", "prert", cache, cat)
    assert state.offer == "import" and state.apply_enabled and not state.can_run
    offer = apply_offer("prert-manual", "prert", cache, cat)
    assert offer.action == "import" and "Import" in offer.question


def test_no_offer_when_apply_can_run_or_the_text_is_wrong(catalogue, tmp_path):
    cat, cache = catalogue
    assert apply_offer("demo-midrt", "midrt") is None                    # bundled: Apply runs
    assert model_box_state("demo-midrt", "midrt").apply_enabled
    assert apply_offer("no-such-model", "midrt", cache, cat) is None     # the info line says what is wrong
    assert not model_box_state("no-such-model", "midrt", cache, cat).apply_enabled
    assert apply_offer(str(tmp_path), "midrt", cache, cat) is None       # a folder: Apply runs (or says why)
