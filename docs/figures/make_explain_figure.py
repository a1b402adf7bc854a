"""docs/figures/explain_maps.png and the sanity-check numbers of docs/explain.md.

    nice -n 10 python docs/figures/make_explain_figure.py WORK/explain-fig [--model Resources/Model] [--cases 36]

A small synthetic archive (size "small") is made in WORK; an unseen endometrioma is the query, its nearest
archive case (image embedding) the hit. Top row: Grad-CAM and occlusion maps of the pair with the given
model (default: the shipped one). Bottom row: the same Grad-CAM after re-initialising every layer of the
image branch (model randomisation) and of a copy trained on shuffled diagnoses vs one trained on the true
diagnoses (data randomisation; both from the same random start, `explain.sanity.fit_diagnosis`).
Prints the rank correlations (Spearman) between maps, and writes them to WORK/explain_sanity.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "explain_maps.png"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("work")
    p.add_argument("--model", default=None)
    p.add_argument("--cases", type=int, default=36)
    p.add_argument("--steps", type=int, default=40, help="training steps of the data-randomisation pair")
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch
    from SimilarCaseRetrievalLib.encoders import CaseEncoder
    from SimilarCaseRetrievalLib.explain import sanity
    from SimilarCaseRetrievalLib.explain.maps import pair_maps
    from SimilarCaseRetrievalLib.explain.volume import map_to_volume
    from SimilarCaseRetrievalLib.render import _draw_panel, row_images
    from SimilarCaseRetrievalLib.store import CaseStore
    from SimilarCaseRetrievalLib.synthetic import make_archive, make_query_case

    torch.set_num_threads(2)
    t0 = time.perf_counter()
    work = Path(args.work)
    archive = work / "archive"
    if not (archive / "cases.sqlite").is_file():
        make_archive(archive, n_cases=args.cases, seed=0, size="small", progress=False)
    store = CaseStore(archive, create=False)
    encoder = CaseEncoder.load(args.model)
    cases = store.list_cases()
    studies = [store.load_study(c) for c in cases]
    masks = [store.load_mask(c, s) for c, s in zip(cases, studies, strict=True)]
    rois = np.stack([encoder.roi_for(s, m) for s, m in zip(studies, masks, strict=True)])
    q_study, q_mask, _ = make_query_case(seed=11, label="endometrioma", size="small")
    q_roi = encoder.roi_for(q_study, q_mask)
    emb = encoder.encode_rois(rois)
    hit = int(np.argmax(emb @ encoder.encode_rois(q_roi[None])[0]))

    # a random-init twin trained on true vs shuffled diagnoses (data randomisation)
    labels = [c.label for c in cases]
    start = CaseEncoder.create(encoder.config, seed=3)
    true_model = sanity.fit_diagnosis(start, rois, labels, steps=args.steps)
    shuffled = list(np.random.default_rng(0).permutation(labels))
    shuffled_model = sanity.fit_diagnosis(start, rois, shuffled, steps=args.steps)
    pairs = [(q_roi, rois[hit])] + [(rois[i], rois[(i + 1) % len(rois)]) for i in range(0, 8, 2)]

    maps = {
        "Grad-CAM": pair_maps(encoder, q_roi, rois[hit], "gradcam"),
        "occlusion": pair_maps(encoder, q_roi, rois[hit], "occlusion"),
        "Grad-CAM, all layers re-initialised": pair_maps(
            sanity.randomised(encoder), q_roi, rois[hit], "gradcam"
        ),
        "Grad-CAM, trained on shuffled labels": pair_maps(shuffled_model, q_roi, rois[hit], "gradcam"),
    }
    numbers: dict[str, object] = {
        "query_hit": ["query (endometrioma)", f"{cases[hit].case_id} ({cases[hit].label})"]
    }
    numbers["score"] = round(maps["Grad-CAM"].score, 4)
    for method in ("gradcam", "occlusion"):
        base = [pair_maps(encoder, q, h, method) for q, h in pairs]
        numbers[f"{method}_cascade"] = [
            (n, round(v, 3)) for n, v in sanity.cascading_correlations(encoder, pairs, method)
        ]
        a = [pair_maps(true_model, q, h, method) for q, h in pairs]
        b = [pair_maps(shuffled_model, q, h, method) for q, h in pairs]
        numbers[f"{method}_true_vs_shuffled_labels"] = round(sanity.mean_map_correlation(a, b), 3)
        numbers[f"{method}_pairs"] = len(base)
    g = [pair_maps(encoder, q, h, "gradcam") for q, h in pairs]
    o = [pair_maps(encoder, q, h, "occlusion") for q, h in pairs]
    numbers["gradcam_vs_occlusion"] = round(sanity.mean_map_correlation(g, o), 3)

    fig, axes = plt.subplots(2, 4, figsize=(9.6, 5.0), dpi=80)
    for col, (title, m) in enumerate(maps.items()):
        for row, (study, mask, roi_map, who) in enumerate(
            ((q_study, q_mask, m.query, "query"), (studies[hit], masks[hit], m.hit, "hit"))
        ):
            dense = map_to_volume(roi_map, study, mask, encoder.config.roi).dense()
            r = row_images(study, mask, ["T2"], overlay=dense)
            name, image, mk, aspect = r.panels[0]
            _draw_panel(axes[row][col], image, mk, aspect, f"{who}: {title}", r.overlays[0])
            axes[row][col].title.set_fontsize(7)
    fig.suptitle(
        f"Similarity maps, query vs nearest case {cases[hit].case_id} ({cases[hit].label}); T2, map in colour",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(args.out, dpi=80)
    numbers["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(numbers, indent=1))
    (work / "explain_sanity.json").write_text(json.dumps(numbers, indent=1), encoding="utf-8")
    print(f"figure: {args.out}")


if __name__ == "__main__":
    main()
