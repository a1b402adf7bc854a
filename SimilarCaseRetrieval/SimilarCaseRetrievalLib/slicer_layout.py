"""Side-by-side layout for the query and its top hits: one linked slice viewer per case (MRML only).

Built like CompareVolumes' `viewerPerVolume`: a custom layout description (one slice view per
case, in a grid), each view's composite node showing that case's reference volume, its segmentation
shown only in that view, and every view centred on the case's segment. Each hit is translated so
its segment centre coincides with the query's, so linked viewers scroll through all masses together.
No Qt: the layout node's view arrangement is what the Slicer layout manager turns into widgets.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from xml.sax.saxutils import escape

from .mrml import LoadedCase, _scene, _slicer, translate_to

LAYOUT_ID = 5701  # custom layout id (Slicer's own layouts are < 100; extensions use > 500)
VIEW_PREFIX = "SCR"
QUERY_VIEW = f"{VIEW_PREFIX}Query"
QUERY_COLOR = "#E17012"
HIT_COLORS = ("#3B8ED0", "#5BAF4A", "#B45FC8", "#D9A520", "#3FB8AF", "#C8505A", "#7F7FD5", "#8C6D46")


def view_names(n_hits: int) -> list[str]:
    """Layout names of the views: the query first, then one per hit."""
    return [QUERY_VIEW] + [f"{VIEW_PREFIX}Hit{i}" for i in range(1, n_hits + 1)]


def grid_shape(n_views: int) -> tuple[int, int]:
    """(rows, columns) of a near-square grid holding `n_views` views, wider than tall."""
    columns = max(1, math.ceil(math.sqrt(n_views)))
    rows = max(1, math.ceil(n_views / columns))
    return rows, columns


def layout_description(names: Sequence[str], labels: Sequence[str] | None = None, orientation="Axial") -> str:
    """Slicer layout XML: the named slice views in a grid, each with a label and a colour."""
    labels = list(labels) if labels is not None else [n.removeprefix(VIEW_PREFIX) for n in names]
    rows, columns = grid_shape(len(names))
    parts = ['<layout type="vertical">']
    for row in range(rows):
        parts.append(' <item><layout type="horizontal">')
        for column in range(columns):
            index = row * columns + column
            if index >= len(names):
                break
            color = QUERY_COLOR if index == 0 else HIT_COLORS[(index - 1) % len(HIT_COLORS)]
            parts.append(
                f'  <item><view class="vtkMRMLSliceNode" singletontag="{escape(names[index])}">'
                f'<property name="orientation" action="default">{orientation}</property>'
                f'<property name="viewlabel" action="default">{escape(labels[index][:12])}</property>'
                f'<property name="viewcolor" action="default">{color}</property>'
                "</view></item>"
            )
        parts.append(" </layout></item>")
    parts.append("</layout>")
    return "\n".join(parts)


def layout_node(scene=None):
    """The scene's layout node (created when the scene has none, e.g. headless)."""
    scene = _scene(scene)
    node = scene.GetFirstNodeByClass("vtkMRMLLayoutNode")
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLLayoutNode")
    return node


def apply_layout(names: Sequence[str], labels: Sequence[str] | None = None, scene=None) -> dict:
    """Register and switch to the side-by-side layout; returns {view name: slice node}."""
    scene = _scene(scene)
    slicer = _slicer()
    node = layout_node(scene)
    description = layout_description(names, labels)
    if node.IsLayoutDescription(LAYOUT_ID):
        node.SetLayoutDescription(LAYOUT_ID, description)
    else:
        node.AddLayoutDescription(LAYOUT_ID, description)
    node.SetViewArrangement(LAYOUT_ID)
    slice_nodes = {}
    for name in names:
        slice_node = scene.GetSingletonNode(name, "vtkMRMLSliceNode")
        if slice_node is None:  # the layout manager creates them in Slicer; headless we do
            slice_node = scene.AddNewNodeByClass("vtkMRMLSliceNode")
            slice_node.SetLayoutName(name)
            slice_node.SetSingletonTag(name)
        slice_nodes[name] = slice_node
        composite = slicer.vtkMRMLSliceLogic.GetSliceCompositeNode(slice_node)
        if composite is None:
            composite = scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode")
            composite.SetLayoutName(name)
            composite.SetSingletonTag(name)
    return slice_nodes


def composite_node(slice_node):
    return _slicer().vtkMRMLSliceLogic.GetSliceCompositeNode(slice_node)


def other_view_ids(scene=None) -> list[str]:
    """Ids of the scene's view nodes that are not side-by-side views (Red, Green, Yellow, 3D...)."""
    scene = _scene(scene)
    ids = []
    for class_name in ("vtkMRMLSliceNode", "vtkMRMLViewNode"):
        for i in range(scene.GetNumberOfNodesByClass(class_name)):
            node = scene.GetNthNodeByClass(i, class_name)
            if not (node.GetLayoutName() or "").startswith(VIEW_PREFIX):
                ids.append(node.GetID())
    return ids


def show_in_view(
    loaded: LoadedCase,
    slice_node,
    *,
    centre_ras=None,
    field_of_view_mm: float | None = None,
    also_in_views: Sequence[str] = (),
):
    """Show a loaded case in one view: its reference volume, its segment (this view only), centred."""
    composite = composite_node(slice_node)
    composite.SetBackgroundVolumeID(loaded.reference_volume.GetID())
    composite.SetForegroundVolumeID("")
    composite.SetLabelVolumeID("")
    composite.SetLinkedControl(True)
    view_id = slice_node.GetID()
    for volume in loaded.volumes.values():
        display = volume.GetDisplayNode()
        if display is not None and hasattr(display, "SetAutoWindowLevel"):
            display.SetAutoWindowLevel(True)
    if loaded.segmentation is not None:
        display = loaded.segmentation.GetDisplayNode()
        if display is not None:
            display.SetViewNodeIDs([view_id, *also_in_views])
            display.SetVisibility2DFill(True)
            display.SetVisibility2DOutline(True)
            display.SetOpacity2DFill(0.25)
    centre = centre_ras if centre_ras is not None else loaded.centre_ras
    if centre is not None:
        slice_node.JumpSliceByCentering(*centre)
    if field_of_view_mm:
        fov = slice_node.GetFieldOfView()
        aspect = fov[1] / fov[0] if fov[0] > 0 else 1.0
        slice_node.SetFieldOfView(field_of_view_mm, field_of_view_mm * aspect, fov[2])
    slice_node.UpdateMatrices()


def common_field_of_view(query: LoadedCase, hits: Sequence[LoadedCase], zoom: float = 2.5, minimum_mm=50.0):
    """One field of view for every view (sizes stay comparable): `zoom` x the larger of the query's
    segment and the hits' median segment, at least `minimum_mm`; None when no extent is known."""
    hit_extents = sorted(h.extent_mm for h in hits if h.extent_mm > 0)
    candidates = [query.extent_mm] if query.extent_mm > 0 else []
    if hit_extents:
        candidates.append(hit_extents[len(hit_extents) // 2])
    if not candidates:
        return None
    return max(minimum_mm, zoom * max(candidates))


def show_side_by_side(
    query: LoadedCase, hits: Sequence[LoadedCase], *, zoom: float = 2.5, scene=None
) -> dict:
    """Lay out the query and the hits in linked viewers, each centred on its segment.

    Hits are translated onto the query's segment centre; every view gets the same field of view
    (`common_field_of_view`). Returns {view name: slice node}.
    """
    scene = _scene(scene)
    names = view_names(len(hits))
    labels = ["Query"] + [f"{i}: {hit.case_id}" for i, hit in enumerate(hits, start=1)]
    slice_nodes = apply_layout(names, labels, scene=scene)
    centre = query.centre_ras
    fov = common_field_of_view(query, hits, zoom)
    # The query's own segmentation stays visible in the usual views too, but not in the hits' views.
    show_in_view(query, slice_nodes[names[0]], field_of_view_mm=fov, also_in_views=other_view_ids(scene))
    for name, hit in zip(names[1:], hits, strict=True):
        if centre is not None:
            translate_to(hit, centre, scene=scene)
        show_in_view(hit, slice_nodes[name], centre_ras=centre, field_of_view_mm=fov)
    return slice_nodes


def current_layout(scene=None) -> int:
    """The scene's current view arrangement (what `restore_layout` goes back to)."""
    return int(layout_node(scene).GetViewArrangement())


def restore_layout(arrangement: int, scene=None) -> None:
    """Give the user back the layout they had before the side-by-side view."""
    node = layout_node(scene)
    if arrangement != LAYOUT_ID and node.GetViewArrangement() == LAYOUT_ID:
        node.SetViewArrangement(int(arrangement))


def show_in_standard_views(volume_node, scene=None) -> list:
    """Show a volume as the background of the usual slice views only (Red, Yellow, Green...), leaving the
    side-by-side views as they are (`slicer.util.setSliceViewerLayers` would set every view)."""
    scene = _scene(scene)
    changed = []
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceNode")):
        slice_node = scene.GetNthNodeByClass(i, "vtkMRMLSliceNode")
        if (slice_node.GetLayoutName() or "").startswith(VIEW_PREFIX):
            continue
        composite = composite_node(slice_node)
        if composite is not None:
            composite.SetBackgroundVolumeID(volume_node.GetID())
            changed.append(slice_node)
    return changed
