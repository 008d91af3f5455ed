"""Seed 004's multimodal outcome network (fig. 2): ResNet-18 on CT+PET, lesion guidance, clinical MLP.

Input ``x`` [B, 3, D, H, W] = (CT in [0, 1], PET normalised, mask with labels {0, 1, 2}) and
``clinical`` [B, p]. Structure (paper section 3.2; layer sizes from the released
``DualBranchFusionResNet`` of Task2_inference.py, where the paper is silent):

* image branch: MONAI's 3D ``ResNet`` with basic blocks, layers (2, 2, 2, 2) = ResNet-18, on
  the two image channels; ``block_inplanes`` (32, 64, 128, 256) as released (half of the
  classical 64..512 width; configurable), PReLU, batch norm, MONAI's defaults for conv1
  (7^3, stride 1) and max pooling;
* lesion-guidance module (LGM): the mask one-hot, channels 1 (GTVp) and 2 (GTVn), through
  Conv3d(2 -> C1, 3^3) - BatchNorm - ReLU, added to the output of the backbone's
  conv1 - bn1 - act ("fused by element-wise addition at the earliest stage");
* then the backbone's max pool, layer1-4, global average pool -> f_img (256 features);
* clinical branch: one layer, Linear(p -> 128) - ReLU - BatchNorm1d (the released RFS model;
  the paper writes 256 features, the released weights have 128: we follow the code);
* fusion: concat, Dropout(0.1), then BatchNorm1d - Linear(-> 128) - ReLU - Dropout(0.1) -
  Linear(-> n_outputs): K = 4 interval logits for RFS, 1 logit for HPV.

Example:
    >>> net = OutcomeNet(n_clinical=20, n_outputs=4)
    >>> logits = net(torch.zeros(2, 3, 96, 96, 96), torch.zeros(2, 20))   # [2, 4]
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from monai.networks.layers import Act
from monai.networks.nets import ResNet
from torch import nn

DEFAULT_BLOCK_INPLANES = (32, 64, 128, 256)


class LesionGuidance(nn.Module):
    """Conv-BN-ReLU on the two lesion channels, matching the backbone's first feature map."""

    def __init__(self, out_channels: int, stride: int = 1):
        super().__init__()
        self.block = nn.Sequential(nn.Conv3d(2, out_channels, kernel_size=3, stride=stride, padding=1),
                                   nn.BatchNorm3d(out_channels), nn.ReLU(inplace=True))

    def forward(self, mask_labels: torch.Tensor) -> torch.Tensor:
        onehot = F.one_hot(mask_labels.long().clamp(0, 2), num_classes=3)  # [B, D, H, W, 3]
        lesions = onehot[..., 1:].permute(0, 4, 1, 2, 3).float()
        return self.block(lesions)


class OutcomeNet(nn.Module):
    """See the module docstring. ``n_outputs``: 4 (RFS intervals) or 1 (HPV)."""

    def __init__(self, n_clinical: int, n_outputs: int, block_inplanes: Sequence[int] = DEFAULT_BLOCK_INPLANES,
                 clinical_width: int = 128, head_width: int = 128, dropout: float = 0.1):
        super().__init__()
        self.image_backbone = ResNet(block="basic", layers=[2, 2, 2, 2], block_inplanes=list(block_inplanes),
                                     spatial_dims=3, n_input_channels=2, num_classes=1, act=Act.PRELU, norm="batch")
        c1 = self.image_backbone.conv1.out_channels
        self.lesion_guidance = LesionGuidance(c1)
        feat = self.image_backbone.fc.in_features
        self.image_backbone.fc = nn.Identity()
        self.clinical = nn.Sequential(nn.Linear(n_clinical, clinical_width), nn.ReLU(), nn.BatchNorm1d(clinical_width))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Sequential(nn.BatchNorm1d(feat + clinical_width), nn.Linear(feat + clinical_width, head_width),
                                  nn.ReLU(), nn.Dropout(dropout), nn.Linear(head_width, n_outputs))

    def image_parameters(self) -> list[nn.Parameter]:
        """The image branch (ResNet + LGM): learning rate 1e-4 in seed 004."""
        return [*self.image_backbone.parameters(), *self.lesion_guidance.parameters()]

    def clinical_head_parameters(self) -> list[nn.Parameter]:
        """The clinical branch and the head: learning rate 5e-4 in seed 004."""
        return [*self.clinical.parameters(), *self.head.parameters()]

    def forward(self, x: torch.Tensor, clinical: torch.Tensor) -> torch.Tensor:
        b = self.image_backbone
        img = b.act(b.bn1(b.conv1(x[:, :2])))
        guide = self.lesion_guidance(x[:, 2])
        if guide.shape[2:] != img.shape[2:]:
            guide = F.interpolate(guide, size=img.shape[2:], mode="trilinear", align_corners=False)
        h = img + guide
        if not b.no_max_pool:
            h = b.maxpool(h)
        h = b.layer4(b.layer3(b.layer2(b.layer1(h))))
        f_img = torch.flatten(b.avgpool(h), 1)
        f = torch.cat([f_img, self.clinical(clinical)], dim=1)
        return self.head(self.dropout(f))
