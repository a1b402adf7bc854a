"""Draw docs/figures/slicer_layout.png: the module's side-by-side layout rendered headless.

A real search on a synthetic archive: the query (a fresh, unseen synthetic study) and its top hits
are loaded into a MRML scene, laid out by `slicer_layout.show_side_by_side` (hits translated onto the
query's segment, views centred on it), and each view is rendered by Slicer's own vtkMRMLSliceLogic
(background = T2, label layer = the segment, drawn as an outline). Needs slicer-core.

    python docs/figures/make_slicer_layout.py [--work /tmp/scr-figure] [--model Resources/Model]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
VIEW_PIXELS = 320


def build(work: Path, model_dir: Path | None, n_cases: int, label: str, seed: int):
    from SimilarCaseRetrievalLib.encoders import CaseEncoder
    from SimilarCaseRetrievalLib.slicer_selftest import tiny_model_config
    from SimilarCaseRetrievalLib.synthetic import ensure_demo_archive, make_query_case

    archive = ensure_demo_archive(work / "archive", n_cases=n_cases, seed=0, size="small", progress=True)
    if model_dir is None:
        model_dir = work / "random-model"
        if not (model_dir / "config.json").is_file():
            CaseEncoder.create(tiny_model_config(), seed=0).save(model_dir)
    study, mask, notes = make_query_case(seed, label, size="small")
    return archive, model_dir, study, mask, notes


def outline_colors(scene):
    """A two-entry colour table: 0 transparent, 1 orange (the segment outline)."""
    node = scene.GetFirstNodeByName("SCR outline")
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLColorTableNode", "SCR outline")
        node.SetTypeToUser()
        node.SetNumberOfColors(2)
        node.SetColor(0, "background", 0.0, 0.0, 0.0, 0.0)
        node.SetColor(1, "mass", 1.0, 0.55, 0.1, 1.0)
    return node


def render_views(slice_nodes: dict, cases: list, scene) -> list[np.ndarray]:
    """RGB image of each view, blended by vtkMRMLSliceLogic (T2 background, segment outline label layer)."""
    import slicer
    from SimilarCaseRetrievalLib import mrml
    from vtk.util.numpy_support import vtk_to_numpy

    images = []
    for (name, slice_node), case in zip(slice_nodes.items(), cases, strict=True):
        fov = slice_node.GetFieldOfView()
        slice_node.SetDimensions(VIEW_PIXELS, VIEW_PIXELS, 1)
        slice_node.SetFieldOfView(fov[0], fov[0], fov[2])
        slice_node.SetUseLabelOutline(True)
        logic = slicer.vtkMRMLSliceLogic()
        logic.SetMRMLScene(scene)
        logic.SetSliceNode(slice_node)
        composite = logic.GetSliceCompositeNode()
        mask = mrml.mask_from_segment(case.segmentation, case.segment_id, case.reference_volume)
        # the exported mask is already in world coordinates (the case's translation included)
        label = mrml.volume_node_from_image(mask, f"{name} label", labelmap=True, scene=scene)
        label.GetDisplayNode().SetAndObserveColorNodeID(outline_colors(scene).GetID())
        composite.SetBackgroundVolumeID(case.reference_volume.GetID())
        composite.SetLabelVolumeID(label.GetID())
        composite.SetLabelOpacity(1.0)
        slice_node.UpdateMatrices()
        producer = logic.GetImageDataConnection().GetProducer()
        producer.Update()
        output = producer.GetOutputDataObject(0)
        width, height, _ = output.GetDimensions()
        rgba = vtk_to_numpy(output.GetPointData().GetScalars()).reshape(height, width, -1)
        images.append(np.flipud(rgba[..., :3]))
    return images


def draw(images, titles, colors, rows, result, out: Path, caption: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from SimilarCaseRetrievalLib import slicer_layout

    n_rows, n_cols = slicer_layout.grid_shape(len(images))
    fig = plt.figure(figsize=(3.1 * n_cols + 4.6, 3.3 * n_rows + 0.7), facecolor="#1e1e1e")
    grid = fig.add_gridspec(n_rows, n_cols + 1, width_ratios=[1.45] + [1] * n_cols, wspace=0.05, hspace=0.18)
    for i, (image, title, color) in enumerate(zip(images, titles, colors, strict=True)):
        ax = fig.add_subplot(grid[i // n_cols, 1 + i % n_cols])
        ax.imshow(image, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_edgecolor(color)
            spine.set_linewidth(4)
        ax.set_title(title, color="white", fontsize=9, loc="left")
    panel = fig.add_subplot(grid[:, 0])
    panel.set_facecolor("#2b2b2b")
    panel.set_xticks([])
    panel.set_yticks([])
    terms = list(result.query_terms)[:4] or ["-"]
    lines = ["Similar Case Retrieval", "", "predicted query terms:", *[f"  {t}" for t in terms], ""]
    lines += ["rank  case        score  label"]
    for row in rows:
        lines.append(f"{row['Rank']:>3}   {row['Case'][:10]:<10}  {row['Score']:.3f}  {row['Label']}")
    lines += ["", "[Refine]  [Show side by side]", "", caption]
    panel.text(
        0.04,
        0.97,
        "\n".join(lines),
        va="top",
        ha="left",
        family="monospace",
        fontsize=8,
        color="white",
        transform=panel.transAxes,
        wrap=True,
    )
    fig.savefig(out, dpi=110, facecolor=fig.get_facecolor(), bbox_inches="tight")
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "scr-slicer-figure")
    parser.add_argument(
        "--model", type=Path, default=None, help="model folder (default: shipped model if any)"
    )
    parser.add_argument("--cases", type=int, default=60)
    parser.add_argument("--label", default="endometrioma")
    parser.add_argument("--seed", type=int, default=4242)
    parser.add_argument("--hits", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "figures" / "slicer_layout.png")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import slicer
    from SimilarCaseRetrievalLib import mrml, slicer_layout
    from SimilarCaseRetrievalLib.resources import default_model_dir
    from SimilarCaseRetrievalLib.search import SearchEngine
    from SimilarCaseRetrievalLib.slicer_logic import hit_rows
    from SimilarCaseRetrievalLib.worker.handlers import result_summary

    shipped = default_model_dir()
    model_dir = args.model or (shipped if (shipped / "config.json").is_file() else None)
    archive, model_dir, study, mask, notes = build(args.work, model_dir, args.cases, args.label, args.seed)
    SearchEngine(archive, model_dir, auto_index=True, progress=True).close()

    scene = slicer.vtkMRMLScene()
    slicer.mrmlScene = scene
    slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene)
    colors = slicer.vtkMRMLColorLogic()
    colors.SetMRMLScene(scene)
    colors.AddDefaultColorNodes()

    volumes = {
        seq: mrml.volume_node_from_image(image, f"query {seq}") for seq, image in study.sequences.items()
    }
    segmentation, segment_id = mrml.segmentation_from_mask(
        mask, "query seg", reference_volume_node=volumes["T2"]
    )
    # the search the module's worker runs (here in-process: a figure script, no GUI to keep responsive)
    engine = SearchEngine(archive, model_dir)
    result = engine.search(study=study, mask=mask, text=notes, k=10, text_weight=0.3)
    hits = [mrml.load_case(engine.store, hit.case_id) for hit in result.hits[: args.hits]]
    query_case = mrml.LoadedCase(
        case_id="query",
        volumes=volumes,
        segmentation=segmentation,
        segment_id=segment_id,
        reference="T2",
        centre_ras=mrml.mask_centre_ras(mask),
        extent_mm=mrml.mask_extent_mm(mask),
    )
    slice_nodes = slicer_layout.show_side_by_side(query_case, hits)
    images = render_views(slice_nodes, [query_case, *hits], scene)
    titles = [f"Query ({args.label}, unseen)"] + [
        f"{hit.rank or i}. {hit.case_id}  {hit.label}  {hit.score:.2f}"
        for i, hit in enumerate(result.hits[: args.hits], 1)
    ]
    view_colors = [slicer_layout.QUERY_COLOR] + list(slicer_layout.HIT_COLORS[: args.hits])
    model_note = "shipped model" if model_dir == shipped else f"model: {Path(model_dir).name}"
    caption = "\n".join(
        [
            f"Synthetic archive: {args.cases} cases",
            f"({model_note}).",
            "Views: vtkMRMLSliceLogic renders",
            "of T2 + segment outline; hits",
            "moved onto the query's segment,",
            "linked, same field of view.",
        ]
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    draw(images, titles, view_colors, hit_rows(result_summary(0, result)), result, args.out, caption)
    engine.close()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
