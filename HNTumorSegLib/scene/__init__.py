"""Scene glue: everything the Slicer module does to the MRML scene, without Qt.

These modules use only the MRML / VTK API (``import slicer`` for the node classes), so the
same code runs inside 3D Slicer (on ``slicer.mrmlScene``) and on the ``slicer-core`` wheel
(on a scene from :func:`.mrml.make_scene`), where the test-suite exercises it.

* :mod:`.mrml` - a standalone scene with the module logics registered; Image <-> volume node;
* :mod:`.inputs` - pick or auto-assign a task's input volumes; load a whole case folder;
* :mod:`.roi_boxes` - lesion boxes <-> ``vtkMRMLMarkupsROINode``; the gradient-map preview;
* :mod:`.segmentation_io` - label map <-> ``vtkMRMLSegmentationNode`` with terminology;
* :mod:`.review` - volumes, lesion list and comparison with a reference as table nodes;
* :mod:`.logic` - the module's logic: parameters, start / poll / cancel the worker, import, export.
* :mod:`.panel_params` - the panel's typed parameter pack (mirrored by the module's parameter node);
* :mod:`.prior_table` - a prior segmentation's structure table (RTSTRUCT / SEG names -> GTVp, GTVn, ignore);
* :mod:`.prior_registration` - "Register pre-RT to mid-RT": the worker's transform as Slicer nodes, re-resampling;
* :mod:`.model_choice` - the models offered for a task, a typed / browsed model folder, licence and source;
  not-installed models marked, with what to click;
* :mod:`.model_install` - the Download / Import buttons: install plan, licence dialog text, the child job;
* :mod:`.run_estimate` - the device a run uses and a rough CPU time (the long-run warning);
* :mod:`.scene_close` - File > Close Scene: cancel the running job, re-read the parameters;
* :mod:`.sample_data` - the phantom cases registered in Slicer's Sample Data module.

Nothing here imports ``qt``, ``ctk`` or ``slicer.app``; importing this package does not
import ``slicer`` either (each module does, so the command line never pays for it).
"""
