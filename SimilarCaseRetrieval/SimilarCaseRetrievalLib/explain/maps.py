"""Similarity maps for a query and a hit: which voxels of each ROI drive their embedding dot product.

- ``gradcam``: Grad-CAM (Selvaraju et al. 2017) applied to the pair score ``s = <e(q), e(h)>`` of the
  L2-normalised image embeddings: for each side, the activations of the last convolutional stage weighted by
  the spatial mean of ds/dA, summed over channels, rectified, upsampled (trilinear) to the ROI grid.
- ``occlusion``: model-agnostic check (Zeiler & Fergus 2014): the image channels (not the mask channel) of one
  side are set to 0 (background after the ROI normalisation) in a sliding box; the map is the mean drop of
  ``s`` over the boxes covering each voxel, its positive part (what supports the similarity).

Maps are (Z, Y, X) float32 in [0, 1] on the ROI grid (1 = the most important voxel of that map);
`volume.py` puts them back into each volume's own space. Works with any `CaseEncoder` whose image branch has
convolutions (the last ``Conv3d``-holding child of the trunk is the "last convolutional stage").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from torch import nn

    from ..encoders import CaseEncoder

METHODS = ("gradcam", "occlusion")


@dataclass
class PairMaps:
    """Maps of one query/hit pair on the ROI grid."""

    query: np.ndarray  # (Z, Y, X) float32 in [0, 1]
    hit: np.ndarray  # (Z, Y, X) float32 in [0, 1]
    method: str
    score: float  # the image embedding dot product of the pair


def last_conv_stage(image_net: nn.Module) -> nn.Module:
    """The module whose output Grad-CAM reads: the last child of ``trunk`` (or of the net) holding a Conv3d."""
    from torch import nn

    container = getattr(image_net, "trunk", image_net)
    stages = [m for m in container.children() if any(isinstance(x, nn.Conv3d) for x in m.modules())]
    if not stages:
        if isinstance(container, nn.Conv3d):
            return container
        raise ValueError("the image network has no 3D convolution: no Grad-CAM map")
    return stages[-1]


def _normalise(m: np.ndarray) -> np.ndarray:
    m = np.nan_to_num(np.asarray(m, np.float32))
    top = float(m.max()) if m.size else 0.0
    return (m / top).astype(np.float32) if top > 0 else np.zeros_like(m, np.float32)


def _pair_tensor(encoder: CaseEncoder, query_roi: np.ndarray, hit_roi: np.ndarray):
    import torch

    rois = encoder.check_rois(np.stack([np.asarray(query_roi), np.asarray(hit_roi)]), "similarity map ROI")
    return torch.from_numpy(np.ascontiguousarray(rois))


def gradcam_pair(encoder: CaseEncoder, query_roi: np.ndarray, hit_roi: np.ndarray) -> PairMaps:
    """Grad-CAM of the pair score on the last convolutional stage, for both sides (an ensemble: the mean of
    its members' maps, each of its own cosine; the score is their mean, as in search)."""
    from ..encoders.ensemble import image_members

    x = _pair_tensor(encoder, query_roi, hit_roi)
    cams, scores = zip(*(_gradcam_member(net, x) for net in image_members(encoder.net.image)), strict=True)
    cam = np.mean(cams, axis=0)
    return PairMaps(_normalise(cam[0]), _normalise(cam[1]), "gradcam", float(np.mean(scores)))


def _gradcam_member(net, x) -> tuple[np.ndarray, float]:
    """(Grad-CAM maps (2, Z, Y, X), cosine) of one image network for the pair ``x``."""
    import torch
    from torch.nn import functional as F

    saved: dict[str, torch.Tensor] = {}

    def keep(_module, _inputs, output):
        output.retain_grad()
        saved["a"] = output

    handle = last_conv_stage(net).register_forward_hook(keep)
    try:
        with torch.enable_grad():
            net.zero_grad(set_to_none=True)
            e = F.normalize(net(x)["embedding"], dim=1)
            score = (e[0] * e[1]).sum()
            score.backward()
    finally:
        handle.remove()
        net.zero_grad(set_to_none=True)
    a, g = saved["a"].detach(), saved["a"].grad.detach()
    weights = g.mean(dim=(2, 3, 4), keepdim=True)
    cam = torch.relu((weights * a).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=tuple(x.shape[2:]), mode="trilinear", align_corners=False)[:, 0].numpy()
    return cam, float(score.detach())


def _boxes(
    shape: tuple[int, ...], patch: tuple[int, ...], stride: tuple[int, ...]
) -> list[tuple[slice, ...]]:
    starts = []
    for n, p, s in zip(shape, patch, stride, strict=True):
        last = max(n - p, 0)
        axis = list(range(0, last + 1, max(1, s)))
        if axis[-1] != last:
            axis.append(last)
        starts.append(axis)
    return [
        (slice(z, z + patch[0]), slice(y, y + patch[1]), slice(x, x + patch[2]))
        for z in starts[0]
        for y in starts[1]
        for x in starts[2]
    ]


def occlusion_pair(
    encoder: CaseEncoder,
    query_roi: np.ndarray,
    hit_roi: np.ndarray,
    patch: tuple[int, int, int] | None = None,
    stride: tuple[int, int, int] | None = None,
    batch_size: int = 32,
) -> PairMaps:
    """Occlusion sensitivity of the pair score for both sides (default box: a quarter of each ROI axis)."""
    x = encoder.check_rois(np.stack([np.asarray(query_roi), np.asarray(hit_roi)]), "similarity map ROI")
    shape = tuple(int(n) for n in x.shape[2:])
    patch = patch or tuple(max(1, n // 4) for n in shape)
    stride = stride or tuple(max(1, p // 2) for p in patch)
    boxes = _boxes(shape, tuple(min(p, n) for p, n in zip(patch, shape, strict=True)), stride)
    emb = encoder.encode_rois(x)
    score = float(emb[0] @ emb[1])
    maps = []
    for side in (0, 1):
        other = emb[1 - side]
        drops = np.zeros(len(boxes), np.float32)
        for start in range(0, len(boxes), batch_size):
            chunk = boxes[start : start + batch_size]
            batch = np.repeat(x[side : side + 1], len(chunk), axis=0)
            for i, box in enumerate(chunk):
                batch[(i, slice(0, x.shape[1] - 1), *box)] = 0.0  # image channels only; the mask stays
            drops[start : start + len(chunk)] = score - encoder.encode_rois(batch) @ other
        total = np.zeros(shape, np.float32)
        count = np.zeros(shape, np.float32)
        for d, box in zip(drops, boxes, strict=True):
            total[box] += d
            count[box] += 1
        maps.append(_normalise(np.maximum(total / np.maximum(count, 1), 0.0)))
    return PairMaps(maps[0], maps[1], "occlusion", score)


def pair_maps(
    encoder: CaseEncoder, query_roi: np.ndarray, hit_roi: np.ndarray, method: str = "gradcam"
) -> PairMaps:
    """Maps of one pair by ``method`` (``gradcam`` or ``occlusion``)."""
    from ..errors import CaseInputError

    if method == "gradcam":
        return gradcam_pair(encoder, query_roi, hit_roi)
    if method == "occlusion":
        return occlusion_pair(encoder, query_roi, hit_roi)
    raise CaseInputError("--explain", f"unknown map method {method!r}", f"use one of {', '.join(METHODS)}")
