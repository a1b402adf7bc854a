"""Side-by-side report: a PNG montage of the query and its hits, and an `index.html` around it.

Each row is one case: per sequence, the axial slice through the segment's centre with the segment's contour,
cropped around the segment; for 3D studies also a coronal slice of the reference sequence. matplotlib (Agg).
"""

from __future__ import annotations

import html
import logging
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import SimpleITK as sitk

    from .results import SearchResult
    from .store import CaseStore
    from .study import Study

log = logging.getLogger(__name__)

PANEL_INCHES = 1.9
DPI = 90
CONTOUR_COLOUR = "#ffcc00"
MAP_CMAP = "jet"
MAP_ALPHA = 0.45
MAP_FLOOR = 0.05  # map values below this are not drawn


@dataclass
class RowImages:
    """Arrays of one row: per panel (title, image (rows, cols), mask, pixel aspect) or a reason it is missing."""

    panels: list[tuple[str, np.ndarray | None, np.ndarray | None, float]]
    overlays: list[np.ndarray | None] | None = None  # per panel: a similarity map (0..1) drawn in colour


def _crop_box(mask: np.ndarray, margin: float = 0.6, minimum: int = 24) -> tuple[slice, slice, slice]:
    """(z, y, x) slices around the mask: its box widened by `margin` of its size on each side, square in-plane."""
    where = np.nonzero(mask)
    lo = np.array([int(w.min()) for w in where])
    hi = np.array([int(w.max()) + 1 for w in where])
    centre = (lo + hi) / 2.0
    half_inplane = max((hi[1:] - lo[1:]).max() * (0.5 + margin), minimum / 2)
    half_z = max((hi[0] - lo[0]) * (0.5 + margin), minimum / 4)
    out = []
    for axis, half in ((0, half_z), (1, half_inplane), (2, half_inplane)):
        a = int(max(0, np.floor(centre[axis] - half)))
        b = int(min(mask.shape[axis], np.ceil(centre[axis] + half)))
        out.append(slice(a, max(b, a + 1)))
    return tuple(out)  # type: ignore[return-value]


def row_images(
    study: Study, mask: sitk.Image, sequences: Sequence[str], overlay: np.ndarray | None = None
) -> RowImages:
    """Axial slice per sequence (and a coronal slice for 3D) through the segment's centre; ``overlay``, a
    (z, y, x) map on the reference grid, is sliced the same way for every panel."""
    import SimpleITK as sitk

    m = sitk.GetArrayFromImage(mask) > 0  # (z, y, x)
    if not m.any():
        return RowImages([(name, None, None, 1.0) for name in sequences])
    zz, yy, _ = np.nonzero(m)
    zc = int(round(float(np.median(zz))))
    if not m[zc].any():
        zc = int(zz[len(zz) // 2])
    yc = int(round(float(np.median(yy))))
    bz, by, bx = _crop_box(m)
    sx, sy, sz = study.reference_image.GetSpacing()
    panels = []
    overlays: list[np.ndarray | None] = []
    for name in sequences:
        if name not in study.sequences:
            panels.append((name, None, None, 1.0))
            overlays.append(None)
            continue
        a = sitk.GetArrayViewFromImage(study.sequences[name])
        panels.append((name, np.array(a[zc, by, bx], np.float32), m[zc, by, bx], sy / sx))
        overlays.append(None if overlay is None else np.asarray(overlay[zc, by, bx], np.float32))
    if m.shape[0] > 1:
        a = sitk.GetArrayViewFromImage(study.reference_image)
        # Coronal: rows = z (flipped so that higher slices are on top), cols = x.
        panels.append(
            (
                f"{study.reference} coronal",
                np.array(a[bz, yc, bx], np.float32)[::-1],
                m[bz, yc, bx][::-1],
                sz / sx,
            )
        )
        overlays.append(None if overlay is None else np.asarray(overlay[bz, yc, bx], np.float32)[::-1])
    return RowImages(panels, overlays if overlay is not None else None)


def _draw_panel(
    ax, image: np.ndarray | None, mask: np.ndarray | None, aspect: float, title: str, overlay=None
) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=7, parse_math=False)  # '$' in a name is text, not mathtext
    ax.set_facecolor("black")
    if image is None:
        ax.text(
            0.5,
            0.5,
            "not available",
            ha="center",
            va="center",
            fontsize=7,
            color="white",
            transform=ax.transAxes,
        )
        return
    lo, hi = np.percentile(image, [1, 99]) if image.size else (0, 1)
    ax.imshow(
        image, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, aspect=aspect, interpolation="nearest"
    )
    if overlay is not None and overlay.shape == image.shape and overlay.max() > MAP_FLOOR:
        shown = np.ma.masked_less(overlay, MAP_FLOOR)
        ax.imshow(
            shown, cmap=MAP_CMAP, vmin=0, vmax=1, alpha=MAP_ALPHA, aspect=aspect, interpolation="bilinear"
        )
    if mask is not None and mask.any() and min(mask.shape) > 1:
        ax.contour(mask.astype(float), levels=[0.5], colors=CONTOUR_COLOUR, linewidths=1.0)


def render_row(path: Path, title: str, row: RowImages, columns: int) -> Path:
    """One row of panels to a PNG (the caption on the left)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        1,
        columns + 1,
        figsize=(PANEL_INCHES * (columns + 1.2), PANEL_INCHES),
        dpi=DPI,
        squeeze=False,
        gridspec_kw={"width_ratios": [1.2] + [1] * columns},
    )
    caption = axes[0][0]
    caption.axis("off")
    caption.text(
        0.0, 0.5, title, ha="left", va="center", fontsize=7, transform=caption.transAxes, parse_math=False
    )
    for n in range(columns):
        ax = axes[0][n + 1]
        if n < len(row.panels):
            name, image, mask, aspect = row.panels[n]
            overlay = row.overlays[n] if row.overlays is not None else None
            _draw_panel(ax, image, mask, aspect, name, overlay)
        else:
            ax.axis("off")
    fig.subplots_adjust(left=0.01, right=0.99, top=0.86, bottom=0.02, wspace=0.05)
    fig.savefig(path, dpi=DPI, facecolor="white")
    plt.close(fig)
    return path


def _stack_pngs(paths: Sequence[Path], out: Path) -> Path:
    """Stack row PNGs vertically into the montage (rows padded to the widest)."""
    import matplotlib.image as mpimg

    rows = [mpimg.imread(str(p)) for p in paths]
    width = max(r.shape[1] for r in rows)
    channels = max(r.shape[2] for r in rows)
    padded = []
    for r in rows:
        if r.shape[2] < channels:
            r = np.concatenate([r, np.ones((*r.shape[:2], channels - r.shape[2]), r.dtype)], axis=2)
        pad = np.ones((r.shape[0], width - r.shape[1], channels), dtype=r.dtype)
        padded.append(np.concatenate([r, pad], axis=1))
    mpimg.imsave(str(out), np.concatenate(padded, axis=0))
    return out


CAPTION_CHARS = 28


def _wrap(text: str) -> str:
    return "\n".join(textwrap.wrap(text, CAPTION_CHARS, break_on_hyphens=False)) or "-"


def _caption_query(result: SearchResult) -> str:
    from .terms import is_informative

    terms = [t for t in result.query_terms if is_informative(t)][:3]
    return f"QUERY ({result.mode})\n" + _wrap("terms: " + (", ".join(terms) or "-"))


def _caption_hit(hit) -> str:
    parts = [f"#{hit.rank} {hit.case_id}", f"score {hit.score:.3f}", _wrap(hit.label or "-")]
    if hit.shared_terms:
        parts.append(_wrap("shared: " + ", ".join(hit.shared_terms[:3])))
    return "\n".join(parts)


def write_report(
    out_dir: str | Path,
    result: SearchResult,
    store: CaseStore,
    *,
    query_study: Study | None = None,
    query_mask: sitk.Image | None = None,
    sequences: Sequence[str] | None = None,
    title: str = "Similar cases",
    explain: str | None = None,
    encoder=None,
    draft=None,
) -> Path:
    """Write `montage.png`, one PNG per row and `index.html` into `out_dir`; returns the HTML path.

    ``explain`` (``gradcam`` or ``occlusion``, with the ``encoder``): each hit row shows the hit's similarity
    map over its panels and one more panel, the query's map for that pair; the HTML shows the matched words
    of the query notes and the hit's report. ``draft`` (an `explain.draft.Draft`): its text is added.
    """
    from tqdm import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    out_dir = out_dir.resolve()
    # From an earlier report in this folder; a symbolic link is removed itself, never what it points to, and
    # every file below is written as a new file in `out_dir` (never through a link placed there).
    for stale in [
        *out_dir.glob("hit_*.png"),
        *(out_dir / n for n in ("query.png", "montage.png", "index.html")),
    ]:
        stale.unlink(missing_ok=True)
    if sequences is None:
        sequences = list(query_study.sequences) if query_study is not None else []
        if not sequences and result.hits:
            sequences = list(store.get(result.hits[0].case_id).sequences)
    sequences = list(sequences)
    rows: list[tuple[str, RowImages]] = []
    if query_study is not None and query_mask is not None:
        rows.append((_caption_query(result), row_images(query_study, query_mask, sequences)))
    words: dict[str, object] = {}
    for hit in tqdm(result.hits, desc="rendering hits", unit="case", disable=len(result.hits) < 5):
        try:
            case = store.get(hit.case_id)
            if explain and encoder is not None and result.text.strip() and case.report.strip():
                from .explain.words import word_matches

                words[hit.case_id] = word_matches(encoder.encode_texts, result.text, case.report)
            study = store.load_study(case)
            hit_mask = store.load_mask(case, study)
            if explain and encoder is not None and query_study is not None and query_mask is not None:
                row = _explained_row(encoder, explain, query_study, query_mask, study, hit_mask, sequences)
            else:
                row = row_images(study, hit_mask, sequences)
        except (ValueError, OSError, RuntimeError) as exc:  # moved or unreadable files: placeholder panels
            log.warning(
                "case %s: images not rendered (%s)",
                hit.case_id,
                str(exc).splitlines()[0] if str(exc) else exc,
            )
            row = RowImages([(name, None, None, 1.0) for name in sequences])
        rows.append((_caption_hit(hit), row))
    columns = max((len(r.panels) for _, r in rows), default=len(sequences)) or 1
    row_paths = []
    for n, (caption, row) in enumerate(rows):
        name = (
            "query.png"
            if (n == 0 and query_study is not None and query_mask is not None)
            else f"hit_{len(row_paths):02d}.png"
        )
        row_paths.append(render_row(out_dir / name, caption, row, columns))
    montage = _stack_pngs(row_paths, out_dir / "montage.png") if row_paths else None
    html_path = out_dir / "index.html"
    html_path.write_text(_html(result, row_paths, montage, title, explain, words, draft), encoding="utf-8")
    return html_path


def _explained_row(encoder, method, query_study, query_mask, study, mask, sequences) -> RowImages:
    """The hit's panels with its similarity map, plus the query's reference slice with the query's map."""
    from .explain.pair import explain_pair

    maps = explain_pair(encoder, query_study, query_mask, study, mask, method)
    row = row_images(study, mask, sequences, overlay=maps.hit.dense())
    q = row_images(query_study, query_mask, [query_study.reference], overlay=maps.query.dense())
    name, image, qmask, aspect = q.panels[0]
    row.panels.append((f"query ({method})", image, qmask, aspect))
    assert row.overlays is not None and q.overlays is not None
    row.overlays.append(q.overlays[0])
    return row


def _html(
    result: SearchResult,
    row_paths: Sequence[Path],
    montage: Path | None,
    title: str,
    explain: str | None = None,
    words: dict | None = None,
    draft=None,
) -> str:
    e = html.escape
    has_query_row = bool(row_paths) and row_paths[0].name == "query.png"
    hit_images = row_paths[1:] if has_query_row else list(row_paths)
    from .terms import is_informative

    shown = {t: p for t, p in result.query_terms.items() if is_informative(t)}
    query_terms = ", ".join(f"{e(t)} ({p:.2f})" for t, p in shown.items()) or "–"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title>",
        "<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top;font-size:13px}"
        "th{background:#f0f0f0}.shared{background:#ffe680;border-radius:3px;padding:0 3px}"
        ".report{max-width:36em}.num{text-align:right;font-variant-numeric:tabular-nums}</style>",
        "</head><body>",
        f"<h1>{e(title)}</h1>",
        f"<p><b>Query</b> ({e(result.mode)}, text weight {result.text_weight:g}, model {e(result.model_version)})"
        + (f"<br>Notes: {e(result.text)}" if result.text else "")
        + f"<br>Predicted query terms: {query_terms}</p>",
    ]
    if has_query_row:
        parts.append(f'<p><img src="{e(row_paths[0].name)}" alt="query"></p>')
    parts += [
        "<table><tr><th>#</th><th>case</th><th>score</th><th>image sim.</th><th>text sim.</th>"
        "<th>diagnosis</th><th>terms (shared highlighted)</th><th>report</th><th>images</th></tr>"
    ]
    for n, hit in enumerate(result.hits):
        shared = {t.lower() for t in hit.shared_terms}
        terms = (
            ", ".join(
                f'<span class="shared">{e(t)}</span>' if t.lower() in shared else e(t) for t in hit.terms
            )
            or "–"
        )
        img = "" if hit.image_score is None else f"{hit.image_score:.3f}"
        txt = (
            "" if hit.text_score is None else f"{hit.text_score:.3f}" + ("" if hit.has_text else " (no text)")
        )
        picture = (
            f'<img src="{e(hit_images[n].name)}" alt="{e(hit.case_id)}" width="420">'
            if n < len(hit_images)
            else ""
        )
        report = e(hit.report_snippet)
        matched = (words or {}).get(hit.case_id)
        if matched is not None:
            report = _marked(hit.report_snippet, matched.shared) + _word_note(matched)
        parts.append(
            f"<tr><td class=num>{hit.rank}</td><td>{e(hit.case_id)}</td><td class=num>{hit.score:.3f}</td>"
            f"<td class=num>{img}</td><td class=num>{txt}</td><td>{e(hit.label or '–')}</td><td>{terms}</td>"
            f'<td class="report">{report}</td><td>{picture}</td></tr>'
        )
    parts.append("</table>")
    if explain:
        parts.append(
            f"<p>Similarity maps ({e(explain)}; colour = share of the image similarity, see docs/explain.md): "
            "each hit row ends with the query's map for that pair. Highlighted words occur in both the query "
            "notes and the report; the words listed lower the text score most when left out.</p>"
        )
    if draft is not None:
        parts.append(f"<h2>Draft report</h2><pre style='white-space:pre-wrap'>{e(draft.to_markdown())}</pre>")
    if montage is not None:
        parts.append(
            f'<h2>Montage</h2><p><img src="{e(montage.name)}" alt="montage" style="max-width:100%"></p>'
        )
    parts.append("</body></html>")
    return "\n".join(parts)


def _marked(text: str, words) -> str:
    from .explain.words import highlight_spans

    out, last = [], 0
    for a, b in highlight_spans(text, words):
        out += [html.escape(text[last:a]), '<span class="shared">', html.escape(text[a:b]), "</span>"]
        last = b
    out.append(html.escape(text[last:]))
    return "".join(out)


def _word_note(matched) -> str:
    parts = []
    for side, label in (("query", "notes"), ("report", "report")):
        top = matched.top(side, 3)
        if top:
            parts.append(f"{label}: " + ", ".join(f"{html.escape(w.word)} ({w.drop:+.3f})" for w in top))
    return f"<br><small>text score {matched.score:.3f}; leave-one-word-out: {'; '.join(parts) or '–'}</small>"
