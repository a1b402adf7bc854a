"""Similarity maps as MRML volume nodes for the module's overlay toggle (Qt-free; imports slicer lazily).

The module calls, after `slicer_layout.show_side_by_side` (which clears the foreground layers):

    maps = explain.pair.explain_pair(encoder, query_study, query_mask, hit_study, hit_mask, "gradcam")
    q_node = add_map_node(maps.query, query_study.reference_image, "query map")
    h_node = add_map_node(maps.hit, hit_study.reference_image, f"{case_id} map", transform=loaded_hit.transform)
    show_map(query_slice_node, q_node, opacity); show_map(hit_slice_node, h_node, opacity)
    show_map(slice_node, None)   # toggle off
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import SimpleITK as sitk

    from .volume import VolumeMap

MAP_COLOURS = "vtkMRMLColorTableNodeRainbow"  # Slicer's Rainbow table (present in the application's scene)
MAP_FLOOR = 0.05  # map values below this are left transparent


def add_map_node(volume_map: VolumeMap, reference: sitk.Image, name: str, *, transform=None, scene=None):
    """A scalar volume node of the map in the reference volume's physical space (the map's box only), coloured
    0..1, values below MAP_FLOOR thresholded away; under ``transform`` (a hit moved next to the query)."""
    from .. import mrml

    node = mrml.volume_node_from_image(volume_map.to_image(reference), name, scene=scene)
    display = node.GetDisplayNode()
    if display is not None:
        if node.GetScene() is not None and node.GetScene().GetNodeByID(MAP_COLOURS) is not None:
            display.SetAndObserveColorNodeID(MAP_COLOURS)
        display.SetAutoWindowLevel(False)
        display.SetWindowLevelMinMax(0.0, 1.0)
        display.SetAutoThreshold(False)
        display.SetLowerThreshold(MAP_FLOOR)
        display.SetUpperThreshold(1.0)
        display.SetApplyThreshold(True)
    if transform is not None:
        node.SetAndObserveTransformNodeID(transform.GetID())
    return node


def show_map(slice_node, map_node, opacity: float = 0.45) -> None:
    """Show ``map_node`` as the foreground of one slice view at ``opacity``; None hides the overlay."""
    from ..slicer_layout import composite_node

    composite = composite_node(slice_node)
    composite.SetForegroundVolumeID(map_node.GetID() if map_node is not None else "")
    composite.SetForegroundOpacity(float(opacity) if map_node is not None else 0.0)
