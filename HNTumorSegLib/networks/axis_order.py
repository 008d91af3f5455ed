"""Networks trained on MONAI's (x, y, z) arrays, run on HNTumorSeg's (z, y, x) arrays.

MONAI's ``LoadImage`` gives arrays in x, y, z order; HNTumorSeg (like SimpleITK and nnU-Net)
runs networks on z, y, x arrays. A checkpoint trained the MONAI way (UW LAIR's HNTS-MRG 2024
SegResNetDS) must see its own order, or its learnt anisotropy (and any odd-sized kernel layout)
is applied along the wrong axes. A model card with ``"axis_order": "xyz"`` makes the loader wrap
each network with :func:`xyz_wrapped`; the card's ``patch_size`` stays z, y, x.

Example:
    >>> import torch
    >>> from HNTumorSegLib.networks.segresnet import build_segresnet_ds
    >>> net = xyz_wrapped(build_segresnet_ds()).eval()      # a MONAI SegResNet trained on x, y, z arrays
    >>> with torch.no_grad():
    ...     net(torch.zeros(1, 2, 16, 32, 48)).shape     # z, y, x in and out
    torch.Size([1, 3, 16, 32, 48])
"""

from __future__ import annotations


def xyz_wrapped(network):
    """``network`` (trained on x, y, z arrays) taking and returning (B, C, z, y, x) tensors."""
    import torch

    class XYZAxisOrder(torch.nn.Module):
        """Permutes (B, C, z, y, x) -> (B, C, x, y, z) for the wrapped network, and its outputs back."""

        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            out = self.net(x.permute(0, 1, 4, 3, 2))
            if isinstance(out, (list, tuple)):
                return type(out)(o.permute(0, 1, 4, 3, 2) for o in out)
            return out.permute(0, 1, 4, 3, 2)

    return XYZAxisOrder(network)
