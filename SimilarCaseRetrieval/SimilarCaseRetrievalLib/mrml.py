"""MRML nodes <-> SimpleITK images: the bridge between a Slicer scene and the retrieval library.

`slicer` (the application, or the headless `slicer-core` package) is imported lazily, inside the
functions, so this module can be imported anywhere. Never imports Qt.

Coordinates: MRML stores geometry in RAS, ITK in LPS; the conversion flips the first two axes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import CaseInputError

if TYPE_CHECKING:  # pragma: no cover
    import SimpleITK as sitk

    from .store import Case, CaseStore
    from .study import Study

_LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0])


def _slicer():
    import slicer

    if getattr(slicer, "mrmlScene", None) is None:
        # Headless slicer-core has no application scene: give it one, as Slicer itself does.
        slicer.mrmlScene = slicer.vtkMRMLScene()
    return slicer


def _scene(scene=None):
    return scene if scene is not None else _slicer().mrmlScene


def ensure_segmentation_support() -> None:
    """Register the segmentation conversion rules (Slicer does this at start-up; slicer-core does not)."""
    slicer = _slicer()
    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    if len(factory.GetConverterRules()) == 0:
        factory.RegisterConverterRule(slicer.vtkBinaryLabelmapToClosedSurfaceConversionRule())
        factory.RegisterConverterRule(slicer.vtkClosedSurfaceToBinaryLabelmapConversionRule())


def _ijk_to_world(volume_node) -> np.ndarray:
    """4x4 IJK -> world RAS matrix, including a linear parent transform."""
    import vtk

    slicer = _slicer()
    ijk_to_ras = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(ijk_to_ras)
    matrix = slicer.util.arrayFromVTKMatrix(ijk_to_ras)
    parent = volume_node.GetParentTransformNode()
    if parent is not None:
        if not parent.IsTransformToWorldLinear():
            raise CaseInputError(
                volume_node.GetName(), "has a non-linear parent transform", "harden the transform first"
            )
        to_world = vtk.vtkMatrix4x4()
        parent.GetMatrixTransformToWorld(to_world)
        matrix = slicer.util.arrayFromVTKMatrix(to_world) @ matrix
    return matrix


def _geometry_from_matrix(matrix: np.ndarray) -> tuple[tuple, tuple, tuple]:
    """(origin, spacing, direction) in LPS, ITK order, from an IJK -> RAS matrix."""
    linear = matrix[:3, :3]
    spacing = np.linalg.norm(linear, axis=0)
    if np.any(spacing <= 0):
        raise CaseInputError(None, "volume has a zero spacing", "fix the volume geometry")
    direction = _LPS_FROM_RAS @ (linear / spacing)
    origin = _LPS_FROM_RAS @ matrix[:3, 3]
    return tuple(float(v) for v in origin), tuple(float(v) for v in spacing), tuple(direction.ravel())


def _matrix_from_image(image: sitk.Image) -> np.ndarray:
    """4x4 IJK -> RAS matrix of a SimpleITK image."""
    direction = np.array(image.GetDirection(), dtype=float).reshape(3, 3)
    matrix = np.eye(4)
    matrix[:3, :3] = _LPS_FROM_RAS @ direction @ np.diag(image.GetSpacing())
    matrix[:3, 3] = _LPS_FROM_RAS @ np.array(image.GetOrigin(), dtype=float)
    return matrix


def image_from_volume_node(volume_node, dtype=np.float32) -> sitk.Image:
    """A scalar volume node as a 3D SimpleITK image (float32 by default; `dtype=None`: the node's own) in LPS."""
    import SimpleITK as sitk

    slicer = _slicer()
    if volume_node is None or volume_node.GetImageData() is None:
        name = volume_node.GetName() if volume_node is not None else "volume"
        raise CaseInputError(name, "has no image data", "load or select a volume with voxels")
    array = np.asarray(slicer.util.arrayFromVolume(volume_node))
    if array.ndim != 3:
        raise CaseInputError(
            volume_node.GetName(),
            f"is not a scalar 3D volume (array shape {array.shape})",
            "select a scalar (grey-level) volume",
        )
    array = array.astype(dtype, copy=True) if dtype is not None else array.copy()
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
        raise CaseInputError(volume_node.GetName(), "contains NaN or infinite voxels", "fix the volume")
    image = sitk.GetImageFromArray(array)  # numpy (K, J, I) -> ITK (I, J, K)
    origin, spacing, direction = _geometry_from_matrix(_ijk_to_world(volume_node))
    image.SetOrigin(origin)
    image.SetSpacing(spacing)
    image.SetDirection(direction)
    return image


def volume_node_from_image(image: sitk.Image, name: str, *, labelmap: bool = False, scene=None):
    """Add a SimpleITK image to the scene as a scalar (or labelmap) volume node."""
    import SimpleITK as sitk

    scene = _scene(scene)
    slicer = _slicer()
    class_name = "vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode"
    node = scene.AddNewNodeByClass(class_name, name)
    node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(_matrix_from_image(image)))
    slicer.util.updateVolumeFromArray(node, sitk.GetArrayFromImage(image))
    node.CreateDefaultDisplayNodes()
    return node


def segment_ids(segmentation_node) -> list[str]:
    """Segment ids of a segmentation node, in order."""
    segmentation = segmentation_node.GetSegmentation()
    return [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]


def resolve_segment_id(segmentation_node, segment: str | None) -> str:
    """A segment id from an id or a name; the only segment when `segment` is empty."""
    where = segmentation_node.GetName()
    ids = segment_ids(segmentation_node)
    if not ids:
        raise CaseInputError(where, "has no segment", "draw the mass with the Segment Editor")
    if not segment:
        if len(ids) > 1:
            raise CaseInputError(where, f"has {len(ids)} segments", "choose the segment around the mass")
        return ids[0]
    if segment in ids:
        return segment
    by_name = segmentation_node.GetSegmentation().GetSegmentIdBySegmentName(segment)
    if by_name:
        return by_name
    raise CaseInputError(where, f"has no segment '{segment}'", f"choose one of: {', '.join(ids)}")


def mask_from_segment(segmentation_node, segment: str | None, reference_volume_node) -> sitk.Image:
    """One segment as a uint8 0/1 SimpleITK mask on the grid of `reference_volume_node`."""
    import SimpleITK as sitk
    import vtk

    slicer = _slicer()
    ensure_segmentation_support()
    segment_id = resolve_segment_id(segmentation_node, segment)
    scene = segmentation_node.GetScene() or slicer.mrmlScene
    ids = vtk.vtkStringArray()
    ids.InsertNextValue(segment_id)
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__scr_export__")
    try:
        ok = slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
            segmentation_node, ids, labelmap, reference_volume_node
        )
        if not ok or labelmap.GetImageData() is None:
            raise CaseInputError(
                segmentation_node.GetName(),
                f"segment '{segment_id}' could not be exported",
                "check that the segment has a binary labelmap",
            )
        array = (np.asarray(slicer.util.arrayFromVolume(labelmap)) > 0).astype(np.uint8)
    finally:
        display = labelmap.GetDisplayNode()
        if display is not None:
            scene.RemoveNode(display)
        scene.RemoveNode(labelmap)
    if not array.any():
        raise CaseInputError(
            segmentation_node.GetName(),
            f"segment '{segment_id}' is empty on volume {reference_volume_node.GetName()}",
            "draw the mass inside the image with the Segment Editor",
        )
    mask = sitk.GetImageFromArray(array)
    origin, spacing, direction = _geometry_from_matrix(_ijk_to_world(reference_volume_node))
    mask.SetOrigin(origin)
    mask.SetSpacing(spacing)
    mask.SetDirection(direction)
    return mask


def segmentation_from_mask(
    mask: sitk.Image,
    name: str,
    *,
    segment_name: str = "mass",
    color: tuple[float, float, float] = (0.9, 0.4, 0.1),
    reference_volume_node=None,
    scene=None,
) -> tuple[Any, str]:
    """A new segmentation node holding `mask` (nonzero voxels) as one segment; returns (node, segment id)."""
    import SimpleITK as sitk
    import vtk

    slicer = _slicer()
    scene = _scene(scene)
    ensure_segmentation_support()
    binary = sitk.Cast(mask > 0, sitk.sitkUInt8)
    labelmap = volume_node_from_image(binary, "__scr_import__", labelmap=True, scene=scene)
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    node.CreateDefaultDisplayNodes()
    if reference_volume_node is not None:
        node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume_node)
    segment_id = node.GetSegmentation().AddEmptySegment(segment_name, segment_name, list(color))
    ids = vtk.vtkStringArray()
    ids.InsertNextValue(segment_id)
    try:
        if not slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, node, ids):
            raise CaseInputError(name, "the mask could not be imported as a segment", "check the mask")
    finally:
        display = labelmap.GetDisplayNode()
        if display is not None:
            scene.RemoveNode(display)
        scene.RemoveNode(labelmap)
    return node, segment_id


def study_from_volume_nodes(volume_nodes: Mapping[str, Any], reference: str | None = None) -> Study:
    """A `Study` from {sequence name: volume node}; empty selections are skipped."""
    from .study import study_from_images

    images = {name: image_from_volume_node(node) for name, node in volume_nodes.items() if node is not None}
    if not images:
        raise CaseInputError(
            "query", "no volume is selected", "select at least the reference sequence volume"
        )
    if reference is not None and reference not in images:
        reference = next(iter(images))
    return study_from_images(images, reference=reference)


def mask_centre_ras(mask: sitk.Image) -> tuple[float, float, float]:
    """Centroid of a mask's nonzero voxels, in RAS millimetres."""
    import SimpleITK as sitk

    array = sitk.GetArrayViewFromImage(mask)
    kji = np.argwhere(array > 0)
    if kji.size == 0:
        raise CaseInputError("mask", "is empty", "draw the mass")
    ijk = kji.mean(axis=0)[::-1]
    ras = _matrix_from_image(mask) @ np.append(ijk, 1.0)
    return tuple(float(v) for v in ras[:3])


def mask_extent_mm(mask: sitk.Image) -> float:
    """Largest side of the mask's bounding box, in millimetres."""
    import SimpleITK as sitk

    kji = np.argwhere(sitk.GetArrayViewFromImage(mask) > 0)
    if kji.size == 0:
        return 0.0
    sides = (kji.max(axis=0) - kji.min(axis=0) + 1)[::-1] * np.array(mask.GetSpacing())
    return float(sides.max())


@dataclass
class LoadedCase:
    """The nodes of one archive case loaded into the scene."""

    case_id: str
    volumes: dict[str, Any]
    segmentation: Any | None
    segment_id: str | None
    reference: str
    centre_ras: tuple[float, float, float] | None = None
    extent_mm: float = 0.0
    transform: Any | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def reference_volume(self):
        return self.volumes[self.reference]

    def nodes(self) -> list:
        """Every node this case added to the scene."""
        nodes = list(self.volumes.values())
        if self.segmentation is not None:
            nodes.append(self.segmentation)
        if self.transform is not None:
            nodes.append(self.transform)
        return nodes


def load_case(store: CaseStore, case: Case | str, *, prefix: str = "", scene=None) -> LoadedCase:
    """Load an archive case (every sequence and its segment) into the scene."""
    if isinstance(case, str):
        case = store.get(case)
    study = store.load_study(case)
    mask = store.load_mask(case, study) if case.mask else None
    return add_case_nodes(case, study, mask, prefix=prefix, scene=scene)


def add_case_nodes(
    case: Case, study: Study, mask: sitk.Image | None, *, prefix: str = "", scene=None
) -> LoadedCase:
    """Add a case's already-read sequences and segment to the scene (GUI thread)."""
    name = f"{prefix}{case.case_id}"
    volumes = {
        seq: volume_node_from_image(image, f"{name} {seq}", scene=scene)
        for seq, image in study.sequences.items()
    }
    segmentation = segment_id = centre = None
    extent = 0.0
    if mask is not None:
        segmentation, segment_id = segmentation_from_mask(
            mask,
            f"{name} segmentation",
            segment_name=case.label or "mass",
            reference_volume_node=volumes[study.reference],
            scene=scene,
        )
        centre = mask_centre_ras(mask)
        extent = mask_extent_mm(mask)
    return LoadedCase(
        case_id=case.case_id,
        volumes=volumes,
        segmentation=segmentation,
        segment_id=segment_id,
        reference=study.reference,
        centre_ras=centre,
        extent_mm=extent,
        info={"label": case.label, "terms": list(case.terms)},
    )


def translate_to(loaded: LoadedCase, target_ras, *, scene=None):
    """Move a loaded case with a linear transform so its segment centre lands on `target_ras`.

    Linked slice viewers then scroll through the query and each case around their masses together.
    """
    import vtk

    if loaded.centre_ras is None:
        return None
    scene = _scene(scene)
    offset = np.asarray(target_ras, dtype=float) - np.asarray(loaded.centre_ras, dtype=float)
    if loaded.transform is None:
        loaded.transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", f"{loaded.case_id} to query")
    matrix = vtk.vtkMatrix4x4()
    for axis in range(3):
        matrix.SetElement(axis, 3, float(offset[axis]))
    loaded.transform.SetMatrixTransformToParent(matrix)
    for node in [*loaded.volumes.values(), loaded.segmentation]:
        if node is not None:
            node.SetAndObserveTransformNodeID(loaded.transform.GetID())
    return loaded.transform


def remove_nodes(nodes, *, scene=None) -> None:
    """Remove nodes (and their display/storage nodes) from the scene."""
    scene = _scene(scene)
    for node in nodes:
        if node is None or node.GetScene() is None:
            continue
        for i in range(node.GetNumberOfDisplayNodes() if hasattr(node, "GetNumberOfDisplayNodes") else 0):
            display = node.GetNthDisplayNode(i)
            if display is not None:
                scene.RemoveNode(display)
        scene.RemoveNode(node)


def nodes_present(loaded: LoadedCase, *, scene=None) -> bool:
    """True while every node of a loaded case is still in the scene (the user may delete them)."""
    scene = _scene(scene)
    return all(node is not None and scene.IsNodePresent(node) for node in loaded.nodes())


def _read_written(path: str):
    import SimpleITK as sitk

    return sitk.ReadImage(str(path))


def add_written_case(written: Mapping[str, Any], *, prefix: str = "", scene=None) -> LoadedCase:
    """Add a case the worker wrote (`case_images` / `demo` result: NRRD files on the case's reference grid)
    to the scene: its sequences as they were written (int16 where whole numbers) and its segment."""
    case = written["case"]
    name = f"{prefix}{case['case_id']}"
    reference = written["reference"]
    volumes = {
        seq: volume_node_from_image(_read_written(path), f"{name} {seq}", scene=scene)
        for seq, path in written["sequences"].items()
    }
    segmentation = segment_id = centre = None
    extent = 0.0
    if written.get("mask"):
        mask = _read_written(written["mask"])
        segmentation, segment_id = segmentation_from_mask(
            mask,
            f"{name} segmentation",
            segment_name=case.get("label") or "mass",
            reference_volume_node=volumes[reference],
            scene=scene,
        )
        centre, extent = mask_centre_ras(mask), mask_extent_mm(mask)
    return LoadedCase(
        case_id=case["case_id"],
        volumes=volumes,
        segmentation=segmentation,
        segment_id=segment_id,
        reference=reference,
        centre_ras=centre,
        extent_mm=extent,
        info={"label": case.get("label"), "terms": list(case.get("terms") or []), "sequences": case.get("sequences")},
    )


def add_written_sequences(loaded: LoadedCase, written: Mapping[str, Any], *, scene=None) -> LoadedCase:
    """Add the sequences of a `case_images` result that a loaded case does not have yet (loaded on demand)."""
    for seq, path in written["sequences"].items():
        if seq not in loaded.volumes:
            node = volume_node_from_image(_read_written(path), f"{loaded.case_id} {seq}", scene=scene)
            if loaded.transform is not None:
                node.SetAndObserveTransformNodeID(loaded.transform.GetID())
            loaded.volumes[seq] = node
    return loaded
