"""Issue 22 item 10: ``models verify`` takes every id ``models list`` shows, imported ones included.

Before: ``models import FOLDER`` told the user to use the folder's name as an id, ``models list``
showed it, and ``models verify ID`` answered "no model folder and no catalogue entry". Now an
imported id is verified like a fetched one: the install manifest's sha256s, then the card's.
Real commands as child processes, a real card folder (a copy of the bundled demo model).
"""

from __future__ import annotations

import json
import shutil

from HNTumorSegLib.models.catalogue import installed_path
from faults_testlib import hntumorseg, one_error_line


def test_verify_takes_every_listed_id_and_checks_an_imported_one(tmp_path):
    env = {"HNTUMORSEG_CACHE": str(tmp_path / "cache")}
    download = tmp_path / "my-demo"
    shutil.copytree(installed_path("demo-midrt"), download)
    res = hntumorseg("models", "import", download, "--accept-licence", "--progress", "none", env=env)
    assert res.returncode == 0, res.stderr
    listed = json.loads(hntumorseg("models", "list", "--json", env=env).stdout)
    ids = [m["id"] for m in listed]
    assert "my-demo" in ids
    for model_id in ids:   # never "no ... entry": installed ones pass, the others say how to install them
        res = hntumorseg("models", "verify", model_id, "--no-load", env=env)
        assert "no catalogue entry" not in res.stderr and "Traceback" not in res.stderr, (model_id, res.stderr)
        assert res.returncode in (0, 2), (model_id, res.stderr)
        if res.returncode == 2:
            assert "not installed" in one_error_line(res.stderr), (model_id, res.stderr)
    ok = hntumorseg("models", "verify", "my-demo", "--no-load", env=env)
    assert ok.returncode == 0 and "files match the import" in ok.stdout and "sha256 OK" in ok.stdout, ok.stderr
    # a changed file of the imported model is found, and named
    weights = tmp_path / "cache" / "models" / "my-demo" / "my-demo" / "fold_0.pt"
    raw = weights.read_bytes()
    weights.write_bytes(raw[:-1] + bytes([raw[-1] ^ 0xFF]))
    bad = hntumorseg("models", "verify", "my-demo", "--no-load", env=env)
    assert bad.returncode == 2 and "fold_0.pt: changed" in one_error_line(bad.stderr), bad.stderr
    unknown = hntumorseg("models", "verify", "no-such-model", env=env)
    assert unknown.returncode == 2 and "no-such-model" in one_error_line(unknown.stderr)
