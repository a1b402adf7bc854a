"""Similarity maps of a query and an archived hit in each volume's own space (what the module overlays)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .maps import pair_maps
from .volume import VolumeMap, map_to_volume

if TYPE_CHECKING:
    import SimpleITK as sitk

    from ..encoders import CaseEncoder
    from ..store import CaseStore
    from ..study import Study


@dataclass
class CaseMaps:
    """Maps of the query and of one hit, each on its own reference volume grid."""

    case_id: str
    query: VolumeMap
    hit: VolumeMap
    method: str
    score: float


def explain_pair(
    encoder: CaseEncoder,
    query_study: Study,
    query_mask: sitk.Image,
    hit_study: Study,
    hit_mask: sitk.Image,
    method: str = "gradcam",
    case_id: str = "",
) -> CaseMaps:
    """Maps (``gradcam`` or ``occlusion``) of a query and a hit, resampled into each study's space."""
    q_roi = encoder.roi_for(query_study, query_mask)
    h_roi = encoder.roi_for(hit_study, hit_mask)
    maps = pair_maps(encoder, q_roi, h_roi, method)
    roi = encoder.config.roi
    return CaseMaps(
        case_id,
        map_to_volume(maps.query, query_study, query_mask, roi),
        map_to_volume(maps.hit, hit_study, hit_mask, roi),
        method,
        maps.score,
    )


def explain_case(
    encoder: CaseEncoder,
    store: CaseStore,
    query_study: Study,
    query_mask: sitk.Image,
    case_id: str,
    method: str = "gradcam",
) -> tuple[CaseMaps, Study, sitk.Image]:
    """Maps of the query and the archived case ``case_id``; also returns the hit's study and mask as read."""
    case = store.get(case_id)
    study = store.load_study(case)
    mask = store.load_mask(case, study)
    return explain_pair(encoder, query_study, query_mask, study, mask, method, case_id), study, mask
