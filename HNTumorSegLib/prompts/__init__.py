"""Prompts and input channels the seed methods feed their networks.

One module per concern, each importable on its own (no torch, no Qt):

* :mod:`.boxes` - per-lesion boxes from a mask, ``boxes.json`` in RAS mm, box <-> voxel indices;
* :mod:`.gradient_map` - seed 003's gradient-magnitude channel inside the boxes;
* :mod:`.ct_channels` - seed 002's CT window and ``[x, x^2, cbrt(x), PET]`` channels;
* :mod:`.normalisation` - intensity schemes read from a model's description (nnU-Net CT, z-score ...);
* :mod:`.head_localisation` - seed 004's PET-driven 200x200x310 mm head crop and its paste-back.

Example:
    >>> from HNTumorSegLib.prompts.boxes import boxes_from_mask, write_boxes
    >>> from HNTumorSegLib.prompts.gradient_map import gradient_map
    >>> boxes = boxes_from_mask(prior_mask, margin_vox=3)
    >>> grad = gradient_map(t2, boxes)        # Image on t2's grid, 0..1, zero outside the boxes
"""
