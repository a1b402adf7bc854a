"""Annotation on a tiny indexed archive with a random-init model: suggest, pre-fill, confirm, the queue, the CLI."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch")

from SimilarCaseRetrievalLib.annotation import (  # noqa: E402
    AnnotationQueue,
    LabelPool,
    confirm_labels,
    prefill_case,
    suggest_cases,
)
from SimilarCaseRetrievalLib.cli import main  # noqa: E402
from SimilarCaseRetrievalLib.errors import CaseInputError  # noqa: E402
from SimilarCaseRetrievalLib.search import SearchEngine, load_encoder  # noqa: E402
from SimilarCaseRetrievalLib.store import Case, CaseStore  # noqa: E402

UNLABELLED = 8


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    from SimilarCaseRetrievalLib.slicer_selftest import build_tiny_indexed_archive

    return build_tiny_indexed_archive(tmp_path_factory.mktemp("annotation"), n_cases=12)


@pytest.fixture
def archive(built, tmp_path) -> tuple[Path, Path, list[str]]:
    """A copy of the indexed archive where the first 8 cases lost their diagnosis and terms."""
    source, model = built
    copy = tmp_path / "archive"
    shutil.copytree(source, copy)
    with CaseStore(copy, create=False) as store:
        cases = store.list_cases()
        for case in cases[:UNLABELLED]:
            store.update(dataclasses.replace(case, label=None, terms=[]))
        unlabelled = [c.case_id for c in cases[:UNLABELLED]]
    return copy, model, unlabelled


def test_pool_splits_labelled_candidates_and_cases_without_segment(archive):
    path, _, unlabelled = archive
    with CaseStore(path, create=False) as store:
        first = store.get(unlabelled[0])
        store.add(dataclasses.replace(first, case_id="no-mask", mask=None, segment=None))
        pool = LabelPool.of(store)
    assert [c.case_id for c in pool.candidates] == unlabelled
    assert len(pool.labelled) == 12 - UNLABELLED
    assert [c.case_id for c in pool.without_segment] == ["no-mask"]


@pytest.mark.parametrize("strategy", ["uncertainty", "diversity", "hybrid", "random"])
def test_suggest_ranks_only_unlabelled_segmented_cases_with_reasons(archive, strategy):
    path, model, unlabelled = archive
    with CaseStore(path, create=False) as store:
        report = suggest_cases(store, load_encoder(model), 5, strategy)
    ids = [s.case_id for s in report.suggestions]
    assert len(ids) == 5 and len(set(ids)) == 5 and set(ids) <= set(unlabelled)
    assert report.labelled == 12 - UNLABELLED and report.candidates == UNLABELLED
    assert [s.rank for s in report.suggestions] == [1, 2, 3, 4, 5]
    assert all(s.reason for s in report.suggestions)
    if strategy in ("uncertainty", "hybrid"):
        assert report.suggestions[0].reason.startswith("diagnosis uncertain: ")
        assert len(report.suggestions[0].diagnosis) == 3
    if strategy == "uncertainty":
        scores = [s.score for s in report.suggestions]
        assert scores == sorted(scores, reverse=True)


def test_a_copy_of_a_labelled_case_is_flagged_as_its_near_duplicate(archive):
    path, model, _ = archive
    with CaseStore(path, create=False) as store:
        labelled = LabelPool.of(store).labelled[0]
        store.add(dataclasses.replace(labelled, case_id="twin", label=None, terms=[]))  # not embedded yet
        report = suggest_cases(store, load_encoder(model), 20, "diversity")
    twin = [s for s in report.suggestions if s.case_id == "twin"]
    assert twin and twin[0].duplicate_of == labelled.case_id and twin[0].duplicate_cosine > 0.999
    # duplicates come after every fresh case, the closest duplicate first (an untrained model may flag others)
    flags = [s.duplicate_of is not None for s in report.suggestions]
    first_dup = flags.index(True)
    assert all(flags[first_dup:]) and report.suggestions[first_dup].case_id == "twin"
    assert len(report.suggestions) == UNLABELLED + 1


def test_prefill_gives_every_diagnosis_and_term_with_probabilities(archive):
    path, model, unlabelled = archive
    encoder = load_encoder(model)
    with CaseStore(path, create=False) as store:
        prefill = prefill_case(store, encoder, unlabelled[0])
    probs = [p for _, p in prefill.diagnosis]
    assert [lab for lab, _ in prefill.diagnosis] and sorted(lab for lab, _ in prefill.diagnosis) == sorted(
        encoder.config.labels
    )
    assert probs == sorted(probs, reverse=True) and sum(probs) == pytest.approx(1.0, abs=1e-3)
    assert prefill.label == prefill.diagnosis[0][0]
    assert len(prefill.terms) == len(encoder.config.terms)
    assert prefill.checked_terms == [t for t, p in prefill.terms if p >= 0.5]
    assert prefill.current_label is None and prefill.current_terms == []
    assert json.dumps(prefill.to_dict())


def test_confirmed_labels_are_stored_and_the_next_search_sees_them(archive):
    path, model, unlabelled = archive
    target = unlabelled[0]
    with CaseStore(path, create=False) as store:
        before = store.get(target)
        n_embedded = store.model_versions()
        updated = confirm_labels(store, target, " fibroma ", ["solid:present", "solid:present", "fat:absent"])
        assert updated.label == "fibroma" and updated.terms == ["solid:present", "fat:absent"]
        stored = store.get(target)
        assert (stored.label, stored.terms) == ("fibroma", ["solid:present", "fat:absent"])
        assert (stored.sequences, stored.mask, stored.report) == (
            before.sequences,
            before.mask,
            before.report,
        )
        assert store.model_versions() == n_embedded  # embeddings kept: the index stays valid
        with pytest.raises(CaseInputError, match="no diagnosis and no terms"):
            confirm_labels(store, unlabelled[1], "  ", [])
        with pytest.raises(CaseInputError, match="no such case"):
            confirm_labels(store, "nope", "fibroma")
        assert store.get(unlabelled[1]).label is None
        study = store.load_study(stored)
        mask = store.load_mask(stored, study)
    engine = SearchEngine(path, model)
    try:
        result = engine.search(study=study, mask=mask, k=5, label="fibroma")
    finally:
        engine.close()
    hit = [h for h in result.hits if h.case_id == target]
    assert hit and hit[0].label == "fibroma" and "solid:present" in hit[0].terms


def test_queue_hands_out_unlabelled_cases_with_files_and_moves_on(archive):
    path, model, unlabelled = archive
    queue = AnnotationQueue(path, model, strategy="hybrid", batch=3)
    try:
        task = queue.next()
        assert task is not None and task.case_id in unlabelled
        assert all(p.is_file() for p in task.sequences.values()) and task.mask.is_file()
        assert task.prefill.case_id == task.case_id and task.suggestion.case_id == task.case_id
        queue.confirm(task.case_id, task.prefill.label, task.prefill.checked_terms or ["solid:absent"])
        queue.skip((second := queue.next()).case_id)
        seen = {task.case_id, second.case_id}
        while (more := queue.next()) is not None:
            assert more.case_id not in seen
            seen.add(more.case_id)
            queue.confirm(more.case_id, "cystadenoma", [])
        assert seen == set(unlabelled)  # every unlabelled case came once; the skipped one stays unlabelled
        assert queue.store.get(second.case_id).label is None
    finally:
        queue.close()


def test_suggest_command_json_and_table(archive, capsys):
    path, model, unlabelled = archive
    rc = main(
        [
            "suggest",
            "--archive",
            str(path),
            "--model",
            str(model),
            "-n",
            "3",
            "--strategy",
            "uncertainty",
            "--json",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["candidates"] == UNLABELLED and len(out["suggestions"]) == 3
    assert all(s["case_id"] in unlabelled for s in out["suggestions"])
    rc = main(
        ["suggest", "--archive", str(path), "--model", str(model), "-n", "2", "--strategy", "diversity"]
    )
    text = capsys.readouterr().out
    assert rc == 0 and "  1. " in text and "farthest from labelled cases: distance" in text


def test_suggest_command_bad_input(tmp_path, capsys):
    assert main(["suggest", "--archive", str(tmp_path / "none")]) == 2
    assert "no case store here" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["suggest", "--archive", str(tmp_path), "--strategy", "greedy"])


def test_an_archive_with_everything_labelled_suggests_nothing(built, capsys):
    path, model = built
    with CaseStore(path, create=False) as store:
        assert suggest_cases(store, load_encoder(model), 5).suggestions == []
    assert main(["suggest", "--archive", str(path), "--model", str(model)]) == 0
    assert "nothing to suggest" in capsys.readouterr().out


def test_unreadable_candidate_is_reported_not_fatal(archive):
    path, model, unlabelled = archive
    with CaseStore(path, create=False) as store:
        case = store.get(unlabelled[0])
        store.add(
            Case(case_id="broken", sequences=dict(case.sequences), mask=str(tmp := path / "gone.nii.gz"))
        )
        assert not tmp.exists()
        report = suggest_cases(store, load_encoder(model), 20, "uncertainty")
    assert "broken" in report.failed and "broken" not in {s.case_id for s in report.suggestions}
