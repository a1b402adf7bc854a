"""`similar-cases evaluate` end to end on tiny generated data (no real data, no network)."""

from __future__ import annotations

import csv
import json

import numpy as np
from SimilarCaseRetrievalLib.cli import main


def _blob(rng, label: int, size: int = 12) -> np.ndarray:
    """A 0/255 3D shape: a sphere (label 0) or an elongated rod (label 1), randomly sized."""
    zz, yy, xx = np.indices((size,) * 3, dtype=np.float32) - (size - 1) / 2
    r = rng.uniform(3.0, 4.5)
    radii = (r, r, r) if label == 0 else (r * 1.2, r / 2.5, r / 2.5)
    return (((zz / radii[0]) ** 2 + (yy / radii[1]) ** 2 + (xx / radii[2]) ** 2) <= 1).astype(np.uint8) * 255


def _npz(path, seed=0):
    rng = np.random.default_rng(seed)
    data = {}
    for split, n in (("train", 24), ("val", 2), ("test", 10)):
        labels = np.array([i % 2 for i in range(n)])
        data[f"{split}_images"] = np.stack([_blob(rng, int(v)) for v in labels])
        data[f"{split}_labels"] = labels[:, None]
    np.savez(path, **data)


def test_evaluate_handcrafted_on_tiny_shapes(tmp_path, capsys):
    npz = tmp_path / "shapes.npz"
    _npz(npz)
    out = tmp_path / "out"
    rc = main(
        [
            "evaluate",
            "--dataset",
            "adrenal",
            "--data",
            str(npz),
            "--method",
            "handcrafted",
            "random",
            "--feedback-rounds",
            "1",
            "-k",
            "5",
            "--bootstrap",
            "50",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "handcrafted" in printed and "mAP@5" in printed
    result = json.loads((out / "results.json").read_text(encoding="utf-8"))
    summary = result["methods"]["handcrafted"]
    assert summary["n_queries"] == 10
    # Spheres vs rods are separable by shape: far better than the 0.5 of chance.
    assert summary["overall"]["precision@1"] >= 0.8
    assert summary["feedback"][0]["round"] == 1
    # The random ranking is the chance floor: near the 0.5 share of relevant cases, below handcrafted.
    assert result["methods"]["random"]["overall"]["map@5"] < summary["overall"]["map@5"]
    assert abs(result["chance_precision"] - 0.5) < 0.05
    assert (out / "metrics.png").stat().st_size > 1000
    assert (out / "examples-handcrafted.png").is_file()


def _reports(folder):
    folder.mkdir()
    rows, split = [], {"train": [], "val": [], "test": []}
    topics = {
        "Cardiomegaly": "The heart is enlarged. Cardiomegaly with mild vascular congestion.",
        "Pleural Effusion": "Blunting of the costophrenic angle, small left pleural effusion.",
        "normal": "The lungs are clear. Heart size normal. No effusion or pneumothorax.",
    }
    uid = 0
    for rep in range(6):
        for tag, text in topics.items():
            uid += 1
            rows.append(
                {
                    "uid": str(uid),
                    "MeSH": tag,
                    "Problems": tag,
                    "image": "",
                    "indication": "",
                    "comparison": "",
                    "findings": f"{text} Note {rep}.",
                    "impression": "Stable.",
                }
            )
            split["test" if rep == 0 else "train"].append({"id": str(uid), "report": "", "image_path": []})
    with (folder / "indiana_reports.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (folder / "r2gen_annotation.json").write_text(json.dumps(split), encoding="utf-8")


def test_evaluate_text_baselines_on_tiny_reports(tmp_path, capsys):
    folder = tmp_path / "iu"
    _reports(folder)
    rc = main(
        [
            "evaluate",
            "--dataset",
            "iu-xray",
            "--data",
            str(folder),
            "--method",
            "tfidf",
            "bm25",
            "--bootstrap",
            "20",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "tfidf" in printed and "bm25" in printed
    methods = json.loads((tmp_path / "out" / "results.json").read_text(encoding="utf-8"))["methods"]
    # Every query has 5 same-topic reports in the index; lexical methods find them first.
    for name in ("tfidf", "bm25"):
        assert methods[name]["n_queries"] == 3
        assert methods[name]["overall"]["precision@5"] == 1.0


def test_evaluate_bad_input_is_one_line_error(tmp_path, capsys):
    rc = main(["evaluate", "--dataset", "mmotu", "--data", str(tmp_path)])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "labels.csv" in err[0]
    rc = main(["evaluate", "--dataset", "iu-xray", "--data", str(tmp_path), "--method", "handcrafted"])
    assert rc == 2


def test_evaluate_archive_cross_validation_with_handcrafted(tmp_path, capsys):
    from SimilarCaseRetrievalLib.synthetic import make_archive

    archive = make_archive(tmp_path / "archive", n_cases=14, seed=1, size="tiny", progress=False)
    out = tmp_path / "out"
    rc = main(
        [
            "evaluate",
            "--archive",
            str(archive),
            "--cv",
            "2",
            "--method",
            "handcrafted",
            "--grid",
            "16,16,8",
            "--bootstrap",
            "30",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    result = json.loads((out / "results.json").read_text(encoding="utf-8"))
    summary = result["methods"]["handcrafted"]
    # Every case is a query exactly once (2 folds), unless no case of its label is in the other fold.
    assert summary["n_queries"] + summary["n_without_relevant"] == 14
    for value in summary["overall"].values():
        assert 0.0 <= value <= 1.0
    assert "handcrafted" in capsys.readouterr().out


def test_evaluate_ours_trains_per_split_and_reports(tmp_path):
    npz = tmp_path / "shapes.npz"
    _npz(npz, seed=2)
    out = tmp_path / "out"
    rc = main(
        [
            "evaluate",
            "--dataset",
            "adrenal",
            "--data",
            str(npz),
            "--method",
            "ours",
            "--mode",
            "image",
            "--epochs",
            "1",
            "--text-quantization",
            "none",
            "--bootstrap",
            "20",
            "--out",
            str(out),
            "--work",
            str(tmp_path / "models"),
        ]
    )
    assert rc == 0
    summary = json.loads((out / "results.json").read_text(encoding="utf-8"))["methods"]["ours-image"]
    assert summary["n_queries"] == 10
    assert 0.0 <= summary["overall"]["map@10"] <= 1.0
    # The model trained on the index split is saved (safetensors + JSON config) in --work.
    saved = list((tmp_path / "models").glob("*/config.json"))
    assert len(saved) == 1
    assert json.loads(saved[0].read_text(encoding="utf-8"))["text_quantization"] == "none"  # fp32 as asked
    # Text mode on a data set without texts is a one-line input error, not a traceback.
    assert (
        main(
            [
                "evaluate",
                "--dataset",
                "adrenal",
                "--data",
                str(npz),
                "--method",
                "ours",
                "--mode",
                "text",
                "--epochs",
                "1",
            ]
        )
        == 2
    )


def _manifest_2d(folder, n: int, seed: int):
    """A manifest of n one-slice (2D) images with a disc (label 0) or a bar (label 1) as the segment."""
    import SimpleITK as sitk

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.indices((40, 40), dtype=np.float32) - 19.5
    rows = [["case_id", "image", "mask", "label"]]
    for i in range(n):
        r = rng.uniform(5, 9)
        mask = (xx**2 + yy**2 <= r * r) if i % 2 == 0 else ((abs(xx) <= r) & (abs(yy) <= 2))
        image = rng.normal(100, 10, (40, 40)).astype(np.float32) + 80 * mask
        for name, arr in (("img", image), ("seg", mask.astype(np.uint8))):
            sitk.WriteImage(sitk.GetImageFromArray(arr), str(folder / f"{name}{i}.nrrd"))
        rows.append([f"c{seed}_{i}", f"img{i}.nrrd", f"seg{i}.nrrd", str(i % 2)])
    path = folder / "manifest.csv"
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    return path


def test_evaluate_manifests_of_2d_images_use_a_one_slice_grid(tmp_path):
    """Without --grid, 2D images get the 64x64x1 grid that `train` picks, not the 3D default (64x64x32)."""
    index = _manifest_2d(tmp_path / "index", 8, seed=0)
    queries = _manifest_2d(tmp_path / "queries", 4, seed=1)
    out = tmp_path / "out"
    args = ["evaluate", "--index-manifest", str(index), "--query-manifest", str(queries)]
    assert main([*args, "--method", "random", "--bootstrap", "20", "--out", str(out)]) == 0
    result = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert result["grid"] == [64, 64, 1]
    assert result["methods"]["random"]["n_queries"] == 4
