"""The panel's typed parameter pack, defined once here and mirrored by the Slicer module's parameter node.

Inside Slicer the panel's state lives in the module's parameter node through
``slicer.parameterNodeWrapper`` (typed fields: enums, bools, node references; no "true"/"false"
strings), so the GUI and the node stay in step and a saved scene restores the panel. That
wrapper only exists inside Slicer, so the *definition* lives here as a plain dataclass,
:class:`PanelParameters`, and ``HNTumorSeg/HNTumorSeg.py`` declares ``HNTumorSegParameterNode``
with exactly these fields, types and defaults (``Testing/test_panel_parameters.py`` compares the
two). Node fields are typed by their MRML class names; here they hold whatever node objects the
caller has (real ``vtkMRML*`` nodes from slicer-core in the tests).

:func:`from_object` copies the fields off any object that has them (the wrapper instance), and
:meth:`PanelParameters.to_run_parameters` gives the scene logic's
:class:`~HNTumorSegLib.scene.logic.Parameters` (node IDs), so the module never converts by hand.

Example:
    >>> from HNTumorSegLib.phantoms import make_midrt_case
    >>> from HNTumorSegLib.scene.mrml import make_scene, volume_node_from_image
    >>> scene, phantom = make_scene().scene, make_midrt_case(seed=0, shape=(8, 32, 32))
    >>> t2_node = volume_node_from_image(scene, phantom["midRT_T2"], "T2")
    >>> prior_node = volume_node_from_image(scene, phantom["preRT_mask_registered"], "prior", label=True)
    >>> p = PanelParameters(task=Task.MIDRT, model="demo-midrt", t2=t2_node, prior=prior_node)
    >>> p.to_run_parameters().inputs == {"T2": "vtkMRMLScalarVolumeNode1"}     # node IDs, by input role
    True
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Optional, Union

from ..vocab import AlignPet, Device, InputRole, Quality, Task

if TYPE_CHECKING:  # MRML classes: only for readers and type checkers (slicer is not imported here)
    from slicer import vtkMRMLLabelMapVolumeNode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode

#: what each quality does, as the panel's quality list says it (README section 1; scene.logic.quality_settings)
QUALITY_TEXT = {Quality.FAST: "fast: one fold, no test-time augmentation, whole image",
                Quality.FULL: "full: all folds and test-time augmentation, whole image"}

#: node field -> input role of the scene logic (``scene.inputs.TASK_INPUTS``): each role's ``field``
NODE_ROLES = {role.field: role for role in InputRole}


@dataclass
class PanelParameters:
    """Everything the panel holds. Field names, types and defaults are mirrored by the module's wrapper."""

    task: Task = Task.MIDRT
    model: str = ""
    device: Device = Device.AUTO
    quality: Quality = Quality.FAST
    use_boxes: bool = True
    #: segment only the boxes (+5 mm): the user's tick alone, never the quality (issue 26)
    restrict_to_boxes: bool = False
    save_uncertainty: bool = False
    # typing.Optional / Union rather than "X | None": Slicer 5.12's parameterNodeWrapper matches node
    # unions by typing.Union
    t2: Optional[vtkMRMLScalarVolumeNode] = None
    ct: Optional[vtkMRMLScalarVolumeNode] = None
    pet: Optional[vtkMRMLScalarVolumeNode] = None
    prior: Union[vtkMRMLLabelMapVolumeNode, vtkMRMLSegmentationNode, None] = None
    #: a segmentation prior's structure table, ``--structures`` syntax ("": automatic; scene.prior_table)
    prior_structures: str = ""
    #: the pre-RT T2 the prior was drawn on ("Register pre-RT to mid-RT"; scene.prior_registration)
    pre_rt: Optional[vtkMRMLScalarVolumeNode] = None
    #: PET/CT: when the PET is registered to the CT (``--align-pet``; prompts.pet_ct_registration)
    align_pet: AlignPet = AlignPet.AUTO

    def to_run_parameters(self):
        """The scene logic's Parameters: node IDs of the task's inputs and prior."""
        from .logic import Parameters

        inputs = {role: getattr(self, name).GetID() for name, role in NODE_ROLES.items()
                  if getattr(self, name) is not None}
        return Parameters(task=self.task, inputs=inputs, prior=self.prior.GetID() if self.prior is not None else "",
                          model=self.model, device=str(self.device), quality=self.quality,
                          use_boxes=self.use_boxes, restrict_to_boxes=self.restrict_to_boxes,
                          save_uncertainty=self.save_uncertainty,
                          prior_structures=self.prior_structures, align_pet=self.align_pet)


def field_names() -> list[str]:
    return [f.name for f in fields(PanelParameters)]


def field_annotations() -> dict[str, str]:
    """``{field: annotation text}`` (what the mirror test compares with the module's wrapper)."""
    return {f.name: str(f.type) for f in fields(PanelParameters)}


def from_object(obj: Any) -> PanelParameters:
    """A PanelParameters with every field read off ``obj`` (the module's parameter-node wrapper)."""
    return PanelParameters(**{name: getattr(obj, name) for name in field_names()})


def assign_nodes(target: Any, assigned: dict) -> None:
    """Put ``scene.inputs.auto_assign``'s ``{role: node}`` into the node fields of ``target``."""
    by_role = {role: name for name, role in NODE_ROLES.items()} | {"prior": "prior"}
    for role, node in assigned.items():
        if role in by_role:
            setattr(target, by_role[role], node)
