"""The image CNN: a strided 3D CNN that reads the ROI tensor (sequences + mask as channels).

Design (numbers in docs/training.md and benchmarks/bench_encoders.py):
- stem: in-plane only "patchify" convolution (kernel = stride = 1x4x4 by default; stem_stride 2 uses 1x3x3,
  stride 1x2x2). The default grid is 64x64x32 (X, Y, Z): striding Y and X first makes the feature map
  roughly isotropic and cuts the cost of every later layer. Stride 4 encodes ~6x faster than stride 2 with the
  same validation mAP@10 on the synthetic archive (docs/training.md);
- then one strided 3x3x3 convolution per stage (stride 2 in every axis still longer than 1). When the ROI is a
  single slice (Z = 1, e.g. 2D ultrasound) the depth kernel becomes 1: the same code is a 2D CNN;
- GroupNorm (no batch statistics: identical output for batch size 1 and N, deterministic);
- global average + max pooling, then the embedding layer and the term / label heads on the same trunk.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    g = max(1, min(groups, channels))
    while channels % g:
        g -= 1
    return nn.GroupNorm(g, channels)


class ConvBlock(nn.Sequential):
    """Conv3d + GroupNorm + SiLU."""

    def __init__(self, cin: int, cout: int, kernel, stride, groups: int):
        kernel = tuple(kernel)
        padding = tuple(k // 2 for k in kernel)
        super().__init__(
            nn.Conv3d(cin, cout, kernel, stride=tuple(stride), padding=padding, bias=False),
            _norm(cout, groups),
            nn.SiLU(inplace=True),
        )


class ImageNet(nn.Module):
    """ROI (N, C, Z, Y, X) -> pooled features -> embedding (unnormalised), term logits, label logits."""

    def __init__(
        self,
        in_channels: int,
        roi_shape: tuple[int, int, int],
        widths: tuple[int, ...] = (16, 32, 64, 96),
        stem_stride: int = 2,
        groups: int = 8,
        embed_dim: int = 256,
        n_terms: int = 0,
        n_labels: int = 0,
    ):
        super().__init__()
        z, y, x = roi_shape
        s = int(stem_stride)
        k = 3 if s <= 2 else s
        layers: list[nn.Module] = [ConvBlock(in_channels, widths[0], (1, k, k), (1, s, s), groups)]
        y, x = -(-y // s), -(-x // s)
        for cin, cout in zip(widths[:-1], widths[1:], strict=False):
            stride = tuple(2 if n > 1 else 1 for n in (z, y, x))
            kernel = tuple(3 if n > 1 else 1 for n in (z, y, x))
            layers.append(ConvBlock(cin, cout, kernel, stride, groups))
            z, y, x = (-(-n // st) for n, st in zip((z, y, x), stride, strict=True))
        self.trunk = nn.Sequential(*layers)
        self.feature_dim = 2 * widths[-1]
        self.embed = nn.Linear(self.feature_dim, embed_dim)
        self.term_head = nn.Linear(self.feature_dim, n_terms) if n_terms else None
        self.label_head = nn.Linear(self.feature_dim, n_labels) if n_labels else None

    def features(self, rois: torch.Tensor) -> torch.Tensor:
        h = self.trunk(rois)
        return torch.cat([h.mean(dim=(2, 3, 4)), h.amax(dim=(2, 3, 4))], dim=1)

    def forward(self, rois: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.features(rois)
        out = {"features": f, "embedding": self.embed(f)}
        if self.term_head is not None:
            out["term_logits"] = self.term_head(f)
        if self.label_head is not None:
            out["label_logits"] = self.label_head(f)
        return out


class NaiveCNN3d(nn.Module):
    """The baseline of the benchmark: 4 full-resolution 3x3x3 convolutions of 32 channels, then pooling."""

    def __init__(self, in_channels: int, width: int = 32, embed_dim: int = 256):
        super().__init__()
        chans = [in_channels, width, width, width, width]
        self.convs = nn.ModuleList(
            nn.Conv3d(a, b, 3, padding=1) for a, b in zip(chans[:-1], chans[1:], strict=True)
        )
        self.embed = nn.Linear(width, embed_dim)

    def forward(self, rois: torch.Tensor) -> torch.Tensor:
        h = rois
        for conv in self.convs:
            h = F.relu(conv(h))
        return self.embed(h.mean(dim=(2, 3, 4)))
