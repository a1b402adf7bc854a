"""`SearchEngine`: query the archive by image ROI, by text, or both; relevance feedback; add cases.

Scoring: `score = (1 - w) * cos(img_q, img_c) + w * cos(txt_q, txt_c)` with `w = text_weight`.
- Query without text (or w = 0): image similarity only. Query without image (or w = 1): text only.
- A case without text (empty report and notes): its image embedding stands in for its text embedding (the
  encoder maps both into one space), so fused and text queries still rank it; its hit says `has_text=False`.
Candidates come from the index (exact below `IndexConfig.exact_threshold`, hnswlib above, over-fetched), are
filtered (label, terms, sequences) and rescored exactly.
Hybrid text scoring (`HybridConfig`, default normalised fusion): the query text's words are also searched in
the case store's FTS5 index (BM25 over notes + reports); matching cases join the candidates and the text
similarity becomes `(1 - l) cos(txt_q, txt_c) + l * bm25 / max bm25` (docs/search.md). Without FTS5 in SQLite,
or with `HybridConfig(method="dense")`, the score is the embeddings' alone.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import CaseInputError
from .feedback import RocchioConfig, rocchio
from .index import ArchiveIndex, IndexConfig, ScoredCase
from .indexer import (
    commit_embeddings,
    embed_images,
    embed_texts_and_backbone,
    index_archive,
    open_index,
    require_cases,
    torch_threads,
)
from .lexical import HybridConfig
from .results import Hit, SavedQuery, SearchResult, snippet

if TYPE_CHECKING:
    import SimpleITK as sitk

    from .encoders import CaseEncoder
    from .store import Case, CaseStore
    from .study import Study

__all__ = ["Hit", "SearchEngine", "SearchResult", "load_encoder", "read_query", "select_terms"]

log = logging.getLogger(__name__)

TERM_THRESHOLD = 0.5
SAVE_ON_ADD_LIMIT = 20_000  # add_case saves the index files at once below this many cases
TOP_TERMS = 3


def load_encoder(model_dir: str | Path | None = None) -> CaseEncoder:
    """The model in `model_dir` (default: the shipped one); missing -> CaseInputError."""
    from .encoders import CaseEncoder
    from .resources import default_model_dir

    model_dir = Path(model_dir) if model_dir is not None else default_model_dir()
    if not model_dir.is_dir():
        raise CaseInputError(
            model_dir,
            "model folder not found",
            "pass --model DIR (a folder written by `similar-cases train`)",
        )
    return CaseEncoder.load(model_dir)


def read_query(case: Case) -> tuple[Study | None, sitk.Image | None, str]:
    """(study, mask, text) of a query given as a manifest row (no image -> text-only query)."""
    from .study import read_mask, read_study

    study = mask = None
    if case.sequences:
        study = read_study(case.sequences)
        if not case.mask:
            raise CaseInputError(f"query {case.case_id}", "image without a mask", "fill the 'mask' column")
        mask = read_mask(case.mask, study.reference_image, case.segment)
    return study, mask, case.text


def select_terms(names: Sequence[str], probs: np.ndarray) -> dict[str, float]:
    """Terms with probability > 0.5, most probable first; if none, the top 3."""
    probs = np.asarray(probs, dtype=float).reshape(-1)
    order = np.argsort(-probs, kind="stable")
    chosen = [i for i in order if probs[i] > TERM_THRESHOLD] or list(order[:TOP_TERMS])
    return {names[i]: float(probs[i]) for i in chosen}


def terms_in_text(names: Sequence[str], text: str) -> dict[str, float]:
    """Vocabulary terms whose name or report phrase (English or French) the text contains (the query terms of
    a text-only query)."""
    from . import terms as lexicon

    low = (text or "").lower()
    found = {}
    for name in names:
        phrases = {name, lexicon.phrase(name, "en"), lexicon.phrase(name, "fr")}
        if any(p.lower() in low for p in phrases if p):
            found[name] = 1.0
    return found


def shared_terms(query_terms: Sequence[str], case_terms: Sequence[str]) -> list[str]:
    """Informative terms (positive findings, not "absent"/"none") the query and the case have in common."""
    from . import terms as lexicon

    low = {t.lower() for t in case_terms}
    return [t for t in query_terms if t.lower() in low and lexicon.is_informative(t)]


class SearchEngine:
    """Model and index loaded once; `search`, `refine`, `add_case`."""

    def __init__(
        self,
        archive_dir: str | Path,
        model_dir: str | Path | None = None,
        *,
        config: IndexConfig | None = None,
        feedback: RocchioConfig | None = None,
        hybrid: HybridConfig | None = None,
        encoder: CaseEncoder | None = None,
        auto_index: bool = False,
        progress: bool = False,
        threads: int | None = 1,
        on_progress: Callable[[int, int], None] | None = None,
    ):
        from .store import CaseStore

        archive_dir = Path(archive_dir)
        if not (archive_dir / "cases.sqlite").is_file():
            raise CaseInputError(
                archive_dir,
                "no case store (cases.sqlite) here",
                "ingest cases first (`similar-cases ingest`) or run `similar-cases demo`",
            )
        self.store: CaseStore = CaseStore(
            archive_dir, create=False, readonly=None
        )  # read-only disk: searchable
        self.encoder: CaseEncoder = encoder if encoder is not None else load_encoder(model_dir)
        self.model_dir = model_dir
        self.config = config or IndexConfig()
        self.feedback = feedback or RocchioConfig()
        self._hybrid = hybrid
        self.threads = threads  # torch intra-op threads while encoding (restored after; None: leave as is)
        self._predicted: dict[str, dict[str, float]] | None = None
        require_cases(self.store)
        self.index: ArchiveIndex = self._open(auto_index, progress, on_progress)

    @property
    def version(self) -> str:
        return self.encoder.version

    @property
    def hybrid(self) -> HybridConfig:
        """The text scoring config: the one given, else the one chosen for this archive and model at indexing
        (lexical/calibrate.py), else the default."""
        if self._hybrid is None:
            state = self.store.hybrid_state(self.version) or {}
            try:
                self._hybrid = HybridConfig(**state["config"]) if "config" in state else HybridConfig()
            except (TypeError, ValueError):
                self._hybrid = HybridConfig()
        return self._hybrid

    @property
    def term_names(self) -> list[str]:
        return list(self.encoder.config.terms)

    def _open(self, auto_index: bool, progress: bool, on_progress=None) -> ArchiveIndex:
        versions = self.store.model_versions()
        embedded = versions.get(self.version, 0)
        total = len(self.store)
        if embedded < total and auto_index:
            log.info("embedding %d case(s) not yet indexed with model %s", total - embedded, self.version)
            index_archive(
                self.store,
                self.encoder,
                config=self.config,
                progress=progress,
                threads=self.threads,
                on_progress=on_progress,
            )
        elif embedded == 0:
            others = ", ".join(f"{v} ({n} cases)" for v, n in versions.items()) or "none"
            model = f" --model {self.model_dir}" if self.model_dir else ""
            raise CaseInputError(
                self.store.archive_dir,
                f"the archive is not indexed with model {self.version} (indexed with: {others})",
                f"run `similar-cases index --archive {self.store.archive_dir}{model}`",
            )
        elif embedded < total:
            log.warning(
                "%d of %d case(s) not indexed yet with model %s: run `similar-cases index`",
                total - embedded,
                total,
                self.version,
            )
        return open_index(self.store, self.version, self.config, must_save=False)

    # ----------------------------------------------------------------- queries
    def encode_query(self, study: Study | None = None, mask: sitk.Image | None = None, text: str = ""):
        """(image vector or None, text vector or None, query terms)."""
        with torch_threads(self.threads):
            return self._encode_query(study, mask, text)[:3]

    def _encode_query(self, study, mask, text: str):
        """(image vector, text vector, query terms, backbone text vector or None)."""
        image_vector, query_terms, backbone = None, {}, None
        if study is not None or mask is not None:
            if study is None or mask is None:
                raise CaseInputError(
                    "query",
                    "an image query needs both the study and the segment mask",
                    "give both (or search by text only)",
                )
            roi = self.encoder.roi_for(study, mask)
            pred = self.encoder.predict_rois(roi[None])
            image_vector = np.asarray(pred.embeddings, dtype=np.float32)[0]
            query_terms = select_terms(self.term_names, np.asarray(pred.term_probs)[0])
        text_vector = None
        if text and text.strip():
            vectors, backbones = embed_texts_and_backbone(self.encoder, [text])
            text_vector = np.asarray(vectors, dtype=np.float32)[0]
            backbone = None if backbones is None else np.asarray(backbones[0], dtype=np.float32)
            if image_vector is None:
                query_terms = terms_in_text(self.term_names, text)
        if image_vector is None and text_vector is None:
            raise CaseInputError("query", "empty query", "give a study with a segment, a text, or both")
        return image_vector, text_vector, query_terms, backbone

    def search(
        self,
        *,
        study: Study | None = None,
        mask: sitk.Image | None = None,
        text: str = "",
        k: int = 10,
        text_weight: float = 0.3,
        label: str | None = None,
        terms: Sequence[str] | None = None,
        sequences: Sequence[str] | None = None,
        query_id: str | None = None,
    ) -> SearchResult:
        """The k most similar cases to the query (see module doc for the score)."""
        with torch_threads(self.threads):
            image_vector, text_vector, query_terms, backbone = self._encode_query(study, mask, text)
        return self.search_vectors(
            image_vector,
            text_vector,
            k=k,
            text_weight=text_weight,
            label=label,
            terms=terms,
            sequences=sequences,
            query_terms=query_terms,
            query_id=query_id,
            text=text,
            backbone_vector=backbone,
        )

    def search_vectors(
        self,
        image_vector: np.ndarray | None,
        text_vector: np.ndarray | None,
        *,
        k: int = 10,
        text_weight: float = 0.3,
        label: str | None = None,
        terms: Sequence[str] | None = None,
        sequences: Sequence[str] | None = None,
        query_terms: dict[str, float] | None = None,
        query_id: str | None = None,
        text: str = "",
        refined: int = 0,
        backbone_vector: np.ndarray | None = None,
    ) -> SearchResult:
        """Search with query vectors (e.g. refined, or loaded with `--load-query`); `text` adds the BM25 side
        and `backbone_vector` (the text's sentence-model embedding) the backbone cosine of hybrid scoring."""
        if k < 1:
            raise CaseInputError("query", f"k = {k}", "ask for at least one hit (k >= 1)")
        for name, v in (("image", image_vector), ("text", text_vector)):
            if v is not None and np.asarray(v).shape != (self.index.dim,):
                raise CaseInputError(
                    "query",
                    f"{name} vector has shape {np.asarray(v).shape}, the index expects ({self.index.dim},)",
                    "use query vectors made with the same model",
                )
        w = float(text_weight)
        if not 0.0 <= w <= 1.0 or not np.isfinite(w):
            raise CaseInputError("query", f"text weight {text_weight}", "use a weight between 0 and 1")
        if text_vector is None:
            w = 0.0
        elif image_vector is None:
            w = 1.0
        allowed = self._allowed(label, terms, sequences)
        lexical = self.lexical_scores(text) if w > 0 else None
        scored = self.index.search(
            image_vector,
            text_vector,
            text_weight=w,
            k=k,
            allowed=allowed,
            lexical=lexical,
            hybrid=self.hybrid,
            backbone=backbone_vector,
        )
        query_terms = dict(query_terms or {})
        hits = [
            self._hit(s, n + 1, query_terms, image_vector is not None, text_vector is not None)
            for n, s in enumerate(scored)
        ]
        return SearchResult(
            hits=hits,
            query_terms=query_terms,
            image_vector=image_vector,
            text_vector=text_vector,
            text_weight=w,
            k=int(k),
            query_id=query_id or uuid.uuid4().hex[:12],
            model_version=self.version,
            text=text,
            label=label,
            terms=list(terms or []),
            sequences=list(sequences or []),
            refined=refined,
            backbone_vector=backbone_vector,
        )

    def lexical_scores(self, text: str) -> dict[str, float] | None:
        """case id -> BM25 of the query text's words in its notes and report (all matching cases when the
        search is exact, else the best `hybrid.candidates`); None when not used (no text, no FTS5, dense)."""
        if not (text and text.strip()) or not self.hybrid.uses_lexical or not self.store.lexical_available:
            return None
        limit = None if len(self.index) < self.config.exact_threshold else self.hybrid.candidates
        return dict(self.store.lexical_search(text, limit))

    def search_saved(self, saved: SavedQuery, **kwargs) -> SearchResult:
        """Search again with a query saved by `SearchResult.save_query`."""
        if saved.model_version and saved.model_version != self.version:
            log.warning(
                "saved query from model %s, searching with model %s", saved.model_version, self.version
            )
        kwargs.setdefault("k", saved.k)
        kwargs.setdefault("text_weight", saved.text_weight)
        kwargs.setdefault("query_terms", saved.query_terms)
        kwargs.setdefault("text", saved.text)
        return self.search_vectors(saved.image_vector, saved.text_vector, **kwargs)

    def _allowed(self, label, terms, sequences) -> set[str] | None:
        """Case ids passing the filters (None: no filter)."""
        if not label and not terms and not sequences:
            return None
        terms = list(terms or [])
        if terms:
            cases = self.store.list_cases(label=label or None, term=terms[0])
        else:
            cases = self.store.list_cases(label=label or None)
        wanted = {t.lower() for t in terms[1:]}
        out = set()
        for case in cases:
            if wanted and not wanted <= {t.lower() for t in case.terms}:
                continue
            if sequences and not set(sequences) <= set(case.sequences):
                continue
            out.add(case.case_id)
        return out

    def _case_terms(self, case: Case) -> list[str]:
        """The case's annotated terms, or (none annotated) its predicted terms > 0.5."""
        if case.terms:
            return list(case.terms)
        probs = self._predicted_terms(case.case_id)
        return [t for t, p in sorted(probs.items(), key=lambda tp: -tp[1]) if p > TERM_THRESHOLD]

    def _predicted_terms(self, case_id: str) -> dict[str, float]:
        """Stored predicted terms of one case for this model, read per case (not the whole table: at 100k
        cases that is millions of rows). Uses the store's documented `predicted_terms` table read-only."""
        import sqlite3

        if self._predicted is None:
            self._predicted = {}
        if case_id not in self._predicted:
            try:
                with sqlite3.connect(f"file:{self.store.db_path}?mode=ro", uri=True) as conn:
                    rows = conn.execute(
                        "SELECT term, prob FROM predicted_terms WHERE case_id = ? AND model_version = ?",
                        (case_id, self.version),
                    ).fetchall()
                self._predicted[case_id] = {str(t): float(p) for t, p in rows}
            except sqlite3.Error:  # a store without that table: fall back to the public (whole-table) API
                self._predicted[case_id] = self.store.get_predicted_terms(self.version).get(case_id, {})
        return self._predicted[case_id]

    def _hit(
        self, s: ScoredCase, rank: int, query_terms: dict[str, float], has_image: bool, has_text: bool
    ) -> Hit:
        case = self.store.get(s.case_id)
        terms = self._case_terms(case)
        return Hit(
            case_id=s.case_id,
            score=s.score,
            image_score=s.image_score if has_image else None,
            text_score=s.text_score if has_text else None,
            lexical_score=s.lexical_score if has_text else None,
            label=case.label,
            terms=terms,
            shared_terms=shared_terms(list(query_terms), terms),
            report_snippet=snippet(case.report),
            has_text=s.has_text,
            rank=rank,
        )

    # ----------------------------------------------------------------- feedback
    def refine(
        self,
        result: SearchResult,
        relevant: Sequence[str],
        not_relevant: Sequence[str] = (),
        *,
        log_feedback: bool = True,
    ) -> SearchResult:
        """Rocchio refinement of the query with the marked hits, logged in the store, and a new search."""
        relevant, not_relevant = list(relevant), list(not_relevant)
        if not relevant and not not_relevant:
            raise CaseInputError(
                "feedback", "no case marked", "mark at least one case relevant or not relevant"
            )
        unknown = [c for c in relevant + not_relevant if c not in self.index]
        if unknown:
            raise CaseInputError(
                "feedback", f"case(s) {', '.join(unknown)} not in the index", "mark cases from the hit list"
            )
        rel_img, rel_txt = self.index.vectors(relevant)
        non_img, non_txt = self.index.vectors(not_relevant)
        image = (
            rocchio(result.image_vector, rel_img, non_img, self.feedback)
            if result.image_vector is not None
            else None
        )
        text = (
            rocchio(result.text_vector, rel_txt, non_txt, self.feedback)
            if result.text_vector is not None
            else None
        )
        if log_feedback and self.store.readonly:
            log.warning("the archive is read-only: this feedback is not logged")
        elif log_feedback:
            self.store.log_feedback(result.query_id, relevant, not_relevant)
        return self.search_vectors(
            image,
            text,
            k=result.k,
            text_weight=result.text_weight,
            label=result.label,
            terms=result.terms,
            sequences=result.sequences,
            query_terms=result.query_terms,
            query_id=result.query_id,
            text=result.text,
            refined=result.refined + 1,
            backbone_vector=result.backbone_vector,
        )

    # ----------------------------------------------------------------- annotators
    def add_case(self, case: Case, study: Study, mask: sitk.Image) -> None:
        """Store the case, embed it and add it to the index at once (nothing stored if anything fails)."""
        roi = self.encoder.roi_for(study, mask)  # validates the study and mask before touching the store
        with torch_threads(self.threads):
            image, probs = embed_images(self.encoder, roi[None], labels=[case.label])  # recorded diagnosis
            text, backbone = embed_texts_and_backbone(self.encoder, [case.text])
        with self.store.transaction():
            self.store.add(case)
            fused = commit_embeddings(
                self.store, self.version, self.term_names, [case.case_id], image, text, probs, backbone
            )
        self._predicted = None
        self.index.add([case.case_id], fused, None if backbone is None else np.nan_to_num(backbone))
        if len(self.index) <= SAVE_ON_ADD_LIMIT:
            self.index.save()
        # else: saving every graph per added case is slow; the next open finds the case in the store and
        # adds it to the saved index then (ArchiveIndex.open)

    def close(self) -> None:
        close = getattr(self.store, "close", None)
        if close is not None:
            close()
