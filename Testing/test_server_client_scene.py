"""The Slicer panel's "Run on: server" (issue 29, :mod:`HNTumorSegLib.scene.remote_run`) on a real MRML
scene (slicer-core) with a real ``hntumorseg serve`` on 127.0.0.1 (:mod:`server_testlib`):

* the choice, URL and token file's path go to the settings store (Slicer's QSettings; a dict
  here), never the token; Apply through the scene's warm session runs on the server and its result
  imports as a local one's would; the saved scene holds neither the token nor its file's path;
* the server killed mid-job: the run fails with one line ("lost the connection ..."), and the scene
  is untouched: the same nodes, nothing imported.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import require_module

require_module("slicer")
require_module("httpx")
require_module("fastapi")

from server_testlib import ServerProcess, wait_until  # noqa: E402

from HNTumorSegLib.errors import InputError  # noqa: E402
from HNTumorSegLib.scene.inputs import load_case_folder  # noqa: E402
from HNTumorSegLib.scene.logic import Parameters, SegmentationSceneLogic  # noqa: E402
from HNTumorSegLib.scene.mrml import make_scene  # noqa: E402
from HNTumorSegLib.scene.refinement import SceneSession  # noqa: E402
from HNTumorSegLib.scene.remote_run import (DictSettings, RemoteSettings, load_settings, save_settings,  # noqa: E402
                                            use_run_target)
from HNTumorSegLib.scene.segmentation_io import segment_ids_by_label  # noqa: E402
from HNTumorSegLib.vocab import RunOn  # noqa: E402

LIMIT_S = 300.0


def scene_with_case(root, shape):
    from HNTumorSegLib.phantoms import write_hntsmrg_cohort

    ids = write_hntsmrg_cohort(root / "cohort", n=1, seed=5, shape=shape, spacing=(0.9, 0.9, 3.0))
    app = make_scene()
    return app, load_case_folder(app.scene, root / "cohort" / ids[0])


def params_for(nodes, quality="fast") -> Parameters:
    return Parameters(task="midrt", inputs={"T2": nodes["midRT_T2"].GetID()},
                      prior=nodes["preRT_mask_registered"].GetID(), model="demo-midrt", device="cpu", quality=quality)


def node_ids(scene) -> list[str]:
    return sorted(scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes()))


def test_settings_keep_the_token_file_path_never_the_token(tmp_path):
    store = DictSettings({"HNTumorSeg/RunOn": "nowhere"})
    assert load_settings(store).run_on is RunOn.LOCAL          # an unknown word: this computer
    with pytest.raises(InputError, match="needs the server's address"):
        RemoteSettings(RunOn.SERVER, "", "token").check()
    save_settings(store, RemoteSettings("server", "http://127.0.0.1:9", str(tmp_path / "token")))
    assert load_settings(store) == RemoteSettings(RunOn.SERVER, "http://127.0.0.1:9", str(tmp_path / "token"))


def test_apply_on_the_server_imports_its_result_and_the_scene_holds_no_token(tmp_path):
    app, nodes = scene_with_case(tmp_path, (16, 64, 64))
    scene = app.scene
    logic = SegmentationSceneLogic(scene, timeout_s=600, check_device=True)
    ss = SceneSession(scene, logic)
    store = DictSettings()
    with ServerProcess(tmp_path / "server") as server:
        save_settings(store, RemoteSettings(RunOn.SERVER, server.url, str(server.token_path)))
        use_run_target(ss, load_settings(store))
        assert logic.check_device is False                     # no local device probe for a server run
        ss.apply(params_for(nodes))
        wait_until(lambda: not logic.poll().running, LIMIT_S, "the server run")
        assert logic.run.state == "succeeded", logic.run.final
        assert logic.run.final.info["server"] == server.url
        seg = logic.import_result()
        assert set(segment_ids_by_label(seg)) >= {1}
        ss.close_session()
    use_run_target(ss, RemoteSettings())                        # back to this computer
    assert ss.client_factory is None and logic.check_device is True
    scene.SetRootDirectory(str(tmp_path))
    scene.SetURL(str(tmp_path / "saved.mrml"))
    assert scene.Commit()
    text = (tmp_path / "saved.mrml").read_text(errors="replace")
    assert server.token not in text and str(server.token_path) not in text and server.url not in text
    assert store.data["HNTumorSeg/ServerTokenFile"] == str(server.token_path)
    assert server.token not in repr(store.data)
    ss.cleanup()


def test_connection_lost_mid_job_leaves_the_scene_untouched(tmp_path):
    app, nodes = scene_with_case(tmp_path, (24, 96, 96))
    scene = app.scene
    logic = SegmentationSceneLogic(scene, timeout_s=600)
    ss = SceneSession(scene, logic)
    with ServerProcess(tmp_path / "doomed") as server:
        use_run_target(ss, RemoteSettings(RunOn.SERVER, server.url, str(server.token_path)), reconnect_s=1.0)
        before = node_ids(scene)
        ss.apply(params_for(nodes, quality="full"))              # folds and mirroring: several seconds
        wait_until(lambda: logic.poll().stage == "inference" or not logic.running, LIMIT_S, "inference")
        assert logic.running, logic.run.final
        server.kill()
        t0 = time.monotonic()
        states = []
        wait_until(lambda: states.append(logic.poll()) or not states[-1].running, 60.0, "the run to fail")
    assert time.monotonic() - t0 < 30.0
    final = states[-1]
    assert final.state == "failed" and final.error.startswith("lost the connection to the server"), final
    assert "\n" not in final.error and "nothing was written" in final.error
    assert node_ids(scene) == before                           # nothing imported, nothing added or removed
    assert logic.result_files == {} and logic.result_dir is None
    with pytest.raises(InputError):
        logic.import_result()
    assert np.asarray([n.startswith("vtkMRMLSegmentationNode") for n in before]).sum() == \
        np.asarray([n.startswith("vtkMRMLSegmentationNode") for n in node_ids(scene)]).sum()
    ss.cleanup()
