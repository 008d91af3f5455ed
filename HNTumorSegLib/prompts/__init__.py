"""Prompts and input channels the seed methods feed their networks.

One module per concern, each importable on its own (no torch, no Qt):

* :mod:`.boxes` - per-lesion boxes from a mask, ``boxes.json`` in RAS mm, box <-> voxel indices;
* :mod:`.margins` - seed 003's random training margins (released 4-7 below / 3-6 above; paper 2-6);
* :mod:`.gradient_map` - seed 003's gradient-magnitude channel inside the boxes;
* :mod:`.ct_channels` - seed 002's CT channel sets (released ``seed002``: 2, 4 or 6 channels; ``seed002_paper``);
* :mod:`.normalisation` - intensity schemes read from a model's description (nnU-Net CT, z-score ...);
* :mod:`.head_localisation` - seed 004's PET-driven 200x200x310 mm head crop and its paste-back;
* :mod:`.pet_ct_registration` - the PET onto the CT, seed 004's rigid-registration fallback;
* :mod:`.registration` / :mod:`.registration_quality` - the pre-RT T2 and contours onto the mid-RT T2
  (rigid, affine or B-spline; ``hntumorseg register``) and its quality figures;
* :mod:`.coarse_to_fine` - seed 002's head region, coarse and fine ROIs (released formulas).

Example:
    >>> from HNTumorSegLib.phantoms import make_midrt_case
    >>> from HNTumorSegLib.prompts.boxes import boxes_from_mask, write_boxes
    >>> from HNTumorSegLib.prompts.gradient_map import gradient_map
    >>> case = make_midrt_case(seed=0, shape=(16, 48, 48))
    >>> t2, prior_mask = case["midRT_T2"], case["preRT_mask_registered"]
    >>> boxes = boxes_from_mask(prior_mask, margin_vox=3)
    >>> [b.name for b in boxes]
    ['GTVp-1', 'GTVn-1', 'GTVn-2']
    >>> grad = gradient_map(t2, boxes)        # Image on t2's grid, 0..1, zero outside the boxes
    >>> grad.array.shape == t2.array.shape, float(grad.array.min()), float(grad.array.max())
    (True, 0.0, 1.0)
"""
