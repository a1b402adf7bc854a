"""Nearest-neighbour index over the case embeddings of one archive and one model version.

Layout beside the case store (`DIR/index/`): one hnswlib graph per kind (`image.hnsw`, `text.hnsw`,
`fused.hnsw`) and one JSON sidecar (`index.json`) with the model version, the live count, the case id of every
graph label (in label order; `null` for deleted labels) and a checksum of the live ids.

Vectors (all unit length, cosine similarity):
- image: the image embedding of the case ROI (D).
- text: the text embedding of the case's report and notes (D). A case with no text uses its image embedding
  in its place (image and text share one embedding space), so text queries still reach it.
- fused: `[a * image, b * text]` (2D) with `a = sqrt(1 - w0)`, `b = sqrt(w0)`, `w0 = FUSED_TEXT_WEIGHT` (0.3).
  For a query `[(1 - w) / a * q_image, w / b * q_text]` the inner product with a fused vector is
  `(1 - w) cos_image + w cos_text`: the fused score ranks exactly, for any w. At w = w0 the query lives in
  the same metric space as the graph (best hnswlib navigation; measured in benchmarks/bench_search.py).

The case store holds the embeddings (the truth); the index files are a cache: on open, an index that does
not match the store (model version, ids, count, file size) is updated or rebuilt from the stored embeddings.
Below `exact_threshold` live cases, queries use exact numpy search; above, hnswlib (then exact rescoring).
Hybrid text search: BM25 scores of the query's words (from the case store's FTS5 index) join the candidates
and the score through `lexical.fuse_scores` (docs/search.md).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .errors import CaseInputError
from .lexical import HybridConfig, blend_backbone, fuse_scores

log = logging.getLogger(__name__)

KINDS = ("image", "text", "fused")
SIDECAR = "index.json"
FORMAT_VERSION = 3  # 3: SHA-256 of every graph file in the sidecar
FUSED_TEXT_WEIGHT = 0.3  # w0: the text share the fused vectors (and graph) are built for
_A = math.sqrt(1.0 - FUSED_TEXT_WEIGHT)
_B = math.sqrt(FUSED_TEXT_WEIGHT)


@dataclass(frozen=True)
class IndexConfig:
    """Index parameters. `exact_threshold`: live cases below which queries are exact (numpy)."""

    exact_threshold: int = 5000
    m: int = 16
    ef_construction: int = 200
    ef_search: int = 400
    overfetch: int = 10  # ANN candidates per requested hit, before filtering and exact rescoring
    rebuild_fraction: float = 0.25  # rebuild the graphs when this fraction of labels is deleted
    num_threads: int = 2

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ScoredCase:
    """One scored case: final score and the similarities it combines (`lexical_score`: BM25, 0 = no word
    of the query text in the case's notes or report)."""

    case_id: str
    score: float
    image_score: float
    text_score: float
    has_text: bool
    lexical_score: float = 0.0


def fuse(image: np.ndarray, text: np.ndarray | None) -> np.ndarray:
    """Fused case vectors `[a * image, b * text]`; rows without text (None or NaN) reuse the image vector."""
    image = np.atleast_2d(np.asarray(image, dtype=np.float32))
    text = image if text is None else np.atleast_2d(np.asarray(text, dtype=np.float32))
    missing = ~np.isfinite(text).all(axis=1)
    text = np.where(missing[:, None], image, text)
    return np.concatenate([_A * image, _B * text], axis=1).astype(np.float32)


def split_fused(fused: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(image, text) parts of fused vectors (..., 2D) -> (..., D) each."""
    return fused[..., :dim] / _A, fused[..., dim:] / _B


def _same(image: np.ndarray, text: np.ndarray) -> np.ndarray:
    """Rows whose text part is the image stand-in (no text)."""
    return np.all(np.abs(image - text) <= 1e-6, axis=-1)


def ids_checksum(ids: Iterable[str]) -> str:
    """Order-independent checksum of a set of case ids."""
    return hashlib.sha256("\n".join(sorted(ids)).encode("utf-8")).hexdigest()


def _labels_ok(sidecar: dict) -> bool:
    """The sidecar's labels are strings or nulls, each live id once, matching its ids checksum (a damaged
    sidecar is rebuilt, never trusted: a duplicated id would be returned twice)."""
    labels = sidecar.get("labels")
    if not isinstance(labels, list) or not all(i is None or isinstance(i, str) for i in labels):
        return False
    live = [i for i in labels if i is not None]
    if len(set(live)) != len(live) or ids_checksum(live) != sidecar.get("ids_checksum"):
        log.warning("index sidecar %s is damaged (case ids); rebuilding", SIDECAR)
        return False
    return True


def _sync(path: Path) -> None:
    """Flush a written file to the disk (a full disk can surface here)."""
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _hnswlib():
    # The `hnswlib` distribution (source build) and `chroma-hnswlib` (prebuilt wheels) both install this module.
    import hnswlib

    return hnswlib


def _normalise(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32).reshape(-1)
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


class ArchiveIndex:
    """Embeddings of the indexed cases (rows = graph labels) and the three hnswlib graphs."""

    def __init__(self, index_dir: Path, model_version: str, dim: int, config: IndexConfig | None = None):
        self.index_dir = Path(index_dir)
        self.model_version = model_version
        self.dim = dim  # D: image / text dimension; fused vectors are 2D
        self.config = config or IndexConfig()
        self.labels: list[str | None] = []  # label -> case id (None: deleted)
        self.rows: dict[str, int] = {}  # case id -> label
        self.fused = np.zeros((0, 2 * dim), dtype=np.float32)
        self.graphs: dict = {}
        # sentence-model (backbone) text embeddings per label, float16; zero rows: none stored (no text)
        self.backbone: np.ndarray | None = None
        self.status = "new"  # after open(): "loaded", "updated" (cases added/removed) or "rebuilt"

    # ----------------------------------------------------------------- basic views
    def __len__(self) -> int:
        return len(self.rows)

    def __contains__(self, case_id: object) -> bool:
        return case_id in self.rows

    def ids(self) -> list[str]:
        """Live case ids in label order."""
        return [i for i in self.labels if i is not None]

    @property
    def deleted(self) -> int:
        return len(self.labels) - len(self.rows)

    def vectors(self, case_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(image, text) vectors of the given cases, (n, D) each (text: the stand-in for cases without text)."""
        return split_fused(self.fused[[self.rows[i] for i in case_ids]], self.dim)

    def has_text(self, case_id: str) -> bool:
        f = self.fused[self.rows[case_id]]
        return not bool(_same(*split_fused(f, self.dim)))

    # ----------------------------------------------------------------- building
    def _kind_vectors(self, kind: str, rows: np.ndarray | slice) -> np.ndarray:
        f = self.fused[rows]
        if kind == "fused":
            return f
        image, text = split_fused(f, self.dim)
        return np.ascontiguousarray(image if kind == "image" else text)

    def _new_graph(self, kind: str, capacity: int):
        graph = _hnswlib().Index(space="cosine", dim=self._kind_dim(kind))
        graph.init_index(
            max_elements=max(capacity, 16), ef_construction=self.config.ef_construction, M=self.config.m
        )
        graph.set_num_threads(self.config.num_threads)
        graph.set_ef(self.config.ef_search)
        return graph

    def set_backbone(self, case_ids: Sequence[str], vectors: np.ndarray) -> None:
        """The backbone text embeddings of the given cases (others, and cases added later without one: none)."""
        vectors = np.nan_to_num(np.asarray(vectors, dtype=np.float32))
        pos = {c: n for n, c in enumerate(case_ids)}
        pairs = [(r, pos[c]) for r, c in enumerate(self.labels) if c is not None and c in pos]
        self.backbone = np.zeros((len(self.labels), vectors.shape[1]), dtype=np.float16)
        if pairs:
            rows, src = zip(*pairs, strict=True)
            self.backbone[list(rows)] = vectors[list(src)]

    def rebuild(self) -> None:
        """Compact the rows (drop deleted labels) and rebuild every graph from the vectors."""
        live = [r for r, i in enumerate(self.labels) if i is not None]
        if self.backbone is not None:
            self.backbone = np.ascontiguousarray(self.backbone[live])
        self.fused = np.ascontiguousarray(self.fused[live])
        self.labels = [self.labels[r] for r in live]
        self.rows = {i: r for r, i in enumerate(self.labels)}
        self.graphs = {}
        n = len(self.labels)
        for kind in KINDS:
            graph = self._new_graph(kind, int(n * 1.25) + 16)
            if n:
                graph.add_items(self._kind_vectors(kind, slice(None)), np.arange(n))
            self.graphs[kind] = graph

    def add(self, case_ids: Sequence[str], fused: np.ndarray, backbone: np.ndarray | None = None) -> None:
        """Add (or replace) cases with their fused vectors (n, 2D) and, where known, backbone text embeddings."""
        fused = np.atleast_2d(np.asarray(fused, dtype=np.float32))
        if fused.shape != (len(case_ids), 2 * self.dim):
            raise ValueError(
                f"expected {len(case_ids)} fused vectors of size {2 * self.dim}, got {fused.shape}"
            )
        self.remove([i for i in case_ids if i in self.rows])
        start = len(self.labels)
        labels = np.arange(start, start + len(case_ids))
        self.fused = np.concatenate([self.fused, fused], axis=0)
        if backbone is not None and self.backbone is None:
            self.backbone = np.zeros((start, np.asarray(backbone).shape[1]), dtype=np.float16)
        if self.backbone is not None:
            rows = np.zeros((len(case_ids), self.backbone.shape[1]), dtype=np.float16)
            if backbone is not None:
                rows[:] = np.nan_to_num(np.asarray(backbone, dtype=np.float32))
            self.backbone = np.concatenate([self.backbone, rows], axis=0)
        self.labels.extend(case_ids)
        self.rows.update({i: int(r) for i, r in zip(case_ids, labels, strict=True)})
        if not self.graphs:
            self.rebuild()
            return
        for kind, graph in self.graphs.items():
            needed = start + len(case_ids)
            if needed > graph.get_max_elements():
                graph.resize_index(int(needed * 1.5) + 16)
            graph.add_items(self._kind_vectors(kind, labels), labels)

    def remove(self, case_ids: Iterable[str]) -> None:
        """Drop cases (hnswlib mark_deleted); rebuild when many labels are deleted."""
        for case_id in case_ids:
            row = self.rows.pop(case_id, None)
            if row is None:
                continue
            self.labels[row] = None
            for graph in self.graphs.values():
                graph.mark_deleted(row)
        if self.labels and self.deleted > self.config.rebuild_fraction * len(self.labels):
            self.rebuild()

    # ----------------------------------------------------------------- persistence
    def _paths(self) -> dict[str, Path]:
        return {kind: self.index_dir / f"{kind}.hnsw" for kind in KINDS}

    def save(self) -> None:
        """Write the graphs, then the sidecar (atomically, last: a torn save is detected and rebuilt on open).

        Each graph is written to a temporary file, synced, read back and verified (layout, graph_files.py)
        before it replaces the old one; its SHA-256 goes into the sidecar and is checked before every load.
        A failed write (disk full, read-only) raises StorageError and leaves the old files in place."""
        from .errors import storage_error
        from .graph_files import check_graph_bytes

        self.index_dir.mkdir(parents=True, exist_ok=True)
        if not self.graphs:
            self.rebuild()
        sizes, digests = {}, {}
        for kind, path in self._paths().items():
            tmp = path.with_suffix(".hnsw.tmp")
            try:
                self.graphs[kind].save_index(str(tmp))  # hnswlib does not report a failed write
                _sync(tmp)
                data = tmp.read_bytes()
            except (OSError, RuntimeError) as exc:
                tmp.unlink(missing_ok=True)
                raise storage_error(path, exc, "cannot write the index file") from None
            problem = check_graph_bytes(
                data, count=len(self.labels), dim=self._kind_dim(kind), m=self.config.m
            )
            if problem:
                tmp.unlink(missing_ok=True)
                raise storage_error(
                    path, f"written file is incomplete: {problem}", "cannot write the index file"
                )
            sizes[kind], digests[kind] = len(data), hashlib.sha256(data).hexdigest()
            os.replace(tmp, path)
        sidecar = {
            "format": FORMAT_VERSION,
            "model_version": self.model_version,
            "dim": self.dim,
            "space": "cosine",
            "count": len(self.rows),
            "ids_checksum": ids_checksum(self.rows),
            "labels": self.labels,
            "file_sizes": sizes,
            "sha256": digests,
            "config": self.config.to_dict(),
        }
        tmp = self.index_dir / (SIDECAR + ".tmp")
        try:
            tmp.write_text(json.dumps(sidecar), encoding="utf-8")
            _sync(tmp)
            os.replace(tmp, self.index_dir / SIDECAR)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise storage_error(self.index_dir / SIDECAR, exc, "cannot write the index file") from None

    def _kind_dim(self, kind: str) -> int:
        return 2 * self.dim if kind == "fused" else self.dim

    def _load_graphs(self, sidecar: dict) -> bool:
        """Load the saved graphs if they match the sidecar; False when they must be rebuilt."""
        labels = sidecar.get("labels")
        if (
            sidecar.get("format") != FORMAT_VERSION
            or sidecar.get("model_version") != self.model_version
            or sidecar.get("dim") != self.dim
            or not isinstance(labels, list)
        ):
            return False
        built = sidecar.get("config") or {}
        if (built.get("m"), built.get("ef_construction")) != (self.config.m, self.config.ef_construction):
            return False  # graphs built with other parameters
        if not self._verified(sidecar, len(labels)):
            return False  # hnswlib never reads a file that failed the check
        graphs = {}
        for kind, path in self._paths().items():
            graph = _hnswlib().Index(space="cosine", dim=self._kind_dim(kind))
            try:
                graph.load_index(str(path), max_elements=len(labels) + 16)
            except (RuntimeError, ValueError, MemoryError) as exc:
                log.warning("index file %s unreadable (%s); rebuilding", path.name, exc)
                return False
            if graph.element_count != len(labels):
                return False
            graph.set_num_threads(self.config.num_threads)
            graph.set_ef(self.config.ef_search)
            graphs[kind] = graph
        self.graphs = graphs
        return True

    def _verified(self, sidecar: dict, count: int) -> bool:
        """True when every graph file has the size and SHA-256 the sidecar recorded and a layout hnswlib can
        walk safely (graph_files.py), checked for the three files at once; the reason is logged otherwise."""
        from concurrent.futures import ThreadPoolExecutor

        from .graph_files import verify_graph_file

        sizes, digests = sidecar.get("file_sizes") or {}, sidecar.get("sha256") or {}

        def verify(kind: str) -> str | None:
            path = self._paths()[kind]
            if not path.is_file():
                return "missing"
            return verify_graph_file(
                path,
                size=sizes.get(kind),
                sha256=digests.get(kind),
                count=count,
                dim=self._kind_dim(kind),
                m=self.config.m,
            )

        with ThreadPoolExecutor(len(KINDS)) as pool:
            problems = dict(zip(KINDS, pool.map(verify, KINDS), strict=True))
        for kind, problem in problems.items():
            if problem:
                log.warning("index file %s.hnsw failed its check (%s); rebuilding", kind, problem)
        return not any(problems.values())

    @classmethod
    def open(
        cls,
        index_dir: Path,
        model_version: str,
        case_ids: Sequence[str],
        fused: np.ndarray,
        config: IndexConfig | None = None,
        *,
        save: bool = True,
        rebuild: bool = False,
    ) -> ArchiveIndex:
        """Index of the stored embeddings `(case_ids, fused)`: load the saved graphs and bring them in line
        with the store (add new cases, drop removed ones), or rebuild them when they do not match (or when
        `rebuild`, e.g. after re-embedding: same ids, new vectors)."""
        fused = np.asarray(fused, dtype=np.float32).reshape(len(case_ids), -1)
        if fused.shape[1] % 2:
            raise CaseInputError(
                index_dir, "stored fused embeddings have an odd size", "re-run `similar-cases index`"
            )
        index = cls(index_dir, model_version, fused.shape[1] // 2, config)
        stored = {i: r for r, i in enumerate(case_ids)}
        sidecar_path = Path(index_dir) / SIDECAR
        sidecar: dict = {}
        if sidecar_path.is_file():
            try:
                sidecar = json.loads(sidecar_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                sidecar = {}
        changed = True
        if sidecar and not rebuild and _labels_ok(sidecar) and index._load_graphs(sidecar):
            labels: list[str | None] = list(sidecar["labels"])
            rows = [stored.get(i) if i is not None else None for i in labels]
            index.labels = labels
            index.fused = np.zeros((len(labels), fused.shape[1]), dtype=np.float32)
            known = [(lbl, r) for lbl, r in enumerate(rows) if r is not None]
            if known:
                lbls, srcs = zip(*known, strict=True)
                index.fused[list(lbls)] = fused[list(srcs)]
            index.rows = {i: lbl for lbl, i in enumerate(labels) if i is not None}
            gone = [i for i in index.rows if i not in stored]
            new = [i for i in case_ids if i not in index.rows]
            changed = bool(gone or new)
            index.status = "updated" if changed else "loaded"
            if gone:
                log.info("index: dropping %d removed case(s)", len(gone))
            index.remove(gone)
            if new:
                log.info("index: adding %d case(s)", len(new))
                index.add(new, fused[[stored[i] for i in new]])
        else:
            if rebuild:
                log.info("rebuilding the index at %s from the stored embeddings", index_dir)
            elif sidecar:
                log.info(
                    "index at %s does not match the case store; rebuilding from stored embeddings", index_dir
                )
            index.labels = list(case_ids)
            index.rows = dict(stored)
            index.fused = np.ascontiguousarray(fused)
            index.rebuild()
            index.status = "rebuilt"
        if save and (changed or rebuild):
            index.save()
        return index

    # ----------------------------------------------------------------- search
    def query_vector(self, image: np.ndarray | None, text: np.ndarray | None, text_weight: float):
        """The kind and the query vector that ranks by `(1 - w) cos_image + w cos_text`."""
        w = float(np.clip(text_weight, 0.0, 1.0))
        if image is None and text is None:
            raise CaseInputError(None, "empty query", "give an image and mask, a text, or both")
        if text is None or w == 0.0:
            return "image", _normalise(image), 0.0  # type: ignore[arg-type]
        if image is None or w == 1.0:
            return "text", _normalise(text), 1.0
        q = np.concatenate([(1.0 - w) / _A * _normalise(image), w / _B * _normalise(text)])
        return "fused", _normalise(q), w

    def _scores(self, kind: str, q: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
        """Exact similarities of the query with every label (rows=None; deleted ones -inf) or the given rows."""
        f = self.fused if rows is None else self.fused[rows]
        if kind == "fused":
            sims = f @ q
        elif kind == "image":
            sims = (f[:, : self.dim] @ q) / _A
        else:
            sims = (f[:, self.dim :] @ q) / _B
        if rows is None and self.deleted:
            sims[[r for r, i in enumerate(self.labels) if i is None]] = -np.inf
        return sims

    def _exact(self, kind: str, q: np.ndarray, rows: np.ndarray | None, n: int) -> np.ndarray:
        """The n best labels by exact search (over `rows`, or every live label)."""
        sims = self._scores(kind, q, rows)
        n = min(n, len(sims))
        top = np.argpartition(-sims, n - 1)[:n] if n < len(sims) else np.arange(len(sims))
        top = top[np.argsort(-sims[top], kind="stable")]
        return top if rows is None else rows[top]

    def _ann(self, kind: str, q: np.ndarray, n: int) -> np.ndarray:
        n = min(n, len(self.rows))
        graph = self.graphs[kind]
        graph.set_ef(max(self.config.ef_search, n))
        try:
            labels, _ = graph.knn_query(q[None, :], k=n)
        except RuntimeError:  # hnswlib could not return n results (poorly connected graph): exact instead
            log.debug("hnswlib returned fewer than %d results; exact search", n)
            return self._exact(kind, q, None, n)
        return labels[0].astype(np.int64)

    def search(
        self,
        image: np.ndarray | None = None,
        text: np.ndarray | None = None,
        *,
        text_weight: float = 0.3,
        k: int = 10,
        allowed: set[str] | None = None,
        lexical: Mapping[str, float] | None = None,
        hybrid: HybridConfig | None = None,
        backbone: np.ndarray | None = None,
    ) -> list[ScoredCase]:
        """Top-k cases by `(1 - w) cos(img_q, img_c) + w cos(txt_q, txt_c)`, restricted to `allowed` if given.
        Image-only queries rank by image similarity, text-only ones by text similarity. With `lexical` (case id
        -> BM25 of the query text) and a `hybrid` config that uses it, those cases join the candidates and the
        text part of the score is the hybrid one (`lexical.fuse_scores`). With the query's `backbone` text
        embedding and `hybrid.backbone_weight` > 0, the dense text similarity blends in the backbone cosine of the
        cases that have one (`lexical.blend_backbone`)."""
        kind, q, w = self.query_vector(image, text, text_weight)
        pool = len(self.rows) if allowed is None else len(allowed)
        k = min(int(k), pool)
        if k <= 0 or not self.rows:
            return []
        if allowed is not None:
            rows = np.array(sorted(self.rows[i] for i in allowed if i in self.rows), dtype=np.int64)
        else:
            rows = None
        lex_rows: dict[int, float] = {}
        if lexical and hybrid is not None and hybrid.uses_lexical and w > 0:
            lex_rows = {self.rows[c]: float(v) for c, v in lexical.items() if c in self.rows and v > 0}
            if allowed is not None:
                lex_rows = {r: v for r, v in lex_rows.items() if self.labels[r] in allowed}
        beta = 0.0
        if backbone is not None and text is not None and self.backbone is not None and hybrid is not None:
            beta = hybrid.backbone_weight if w > 0 else 0.0
        exact = len(self.rows) < self.config.exact_threshold or (
            rows is not None and len(rows) < self.config.exact_threshold
        )
        if exact and (lex_rows or beta > 0):  # every case is a candidate: the fusion sees the whole ranking
            cand = rows if rows is not None else np.array([r for r, i in enumerate(self.labels) if i is not None], np.int64)
        elif exact:
            cand = self._exact(kind, q, rows, k)
        else:
            n = max(k * self.config.overfetch, 100)
            while True:
                cand = self._ann(kind, q, n)
                if rows is not None:
                    cand = cand[np.isin(cand, rows)]
                if len(cand) >= k or n >= len(self.rows):
                    break
                n *= 4
            if lex_rows:
                cand = np.union1d(cand, np.fromiter(lex_rows, dtype=np.int64, count=len(lex_rows)))
        return self._rescore(cand, image, text, w, k, lex_rows, hybrid, backbone if beta > 0 else None)

    def _rescore(
        self,
        rows: np.ndarray,
        image,
        text,
        w: float,
        k: int,
        lex_rows: Mapping[int, float] | None = None,
        hybrid: HybridConfig | None = None,
        backbone: np.ndarray | None = None,
    ) -> list[ScoredCase]:
        """Exact scores for candidate rows, the best k first."""
        rows = np.asarray(rows, dtype=np.int64)
        f_img, f_txt = split_fused(self.fused[rows], self.dim)
        img_s = f_img @ _normalise(image) if image is not None else np.zeros(len(rows), np.float32)
        txt_s = f_txt @ _normalise(text) if text is not None else np.zeros(len(rows), np.float32)
        if backbone is not None and hybrid is not None and self.backbone is not None:
            b = self.backbone[rows].astype(np.float32)
            stored = np.any(b != 0, axis=1)  # cases without a backbone embedding keep the projected cosine
            blended = blend_backbone(txt_s, b @ _normalise(backbone), hybrid.backbone_weight)
            txt_s = np.where(stored, blended, txt_s)
        lex_s = np.zeros(len(rows), np.float64)
        if lex_rows:
            lex_s = np.array([lex_rows.get(int(r), 0.0) for r in rows], dtype=np.float64)
            score = fuse_scores(
                img_s if image is not None else None, txt_s if text is not None else None, lex_s, w, hybrid
            )
        else:
            score = (1.0 - w) * img_s + w * txt_s
        top = np.argpartition(-score, k - 1)[:k] if k < len(score) else np.arange(len(score))
        order = top[np.argsort(-score[top], kind="stable")]
        no_text = _same(f_img[order], f_txt[order])
        return [
            ScoredCase(
                case_id=self.labels[rows[o]],  # type: ignore[arg-type]
                score=float(score[o]),
                image_score=float(img_s[o]),
                text_score=float(txt_s[o]),
                has_text=not bool(no_text[n]),
                lexical_score=float(lex_s[o]),
            )
            for n, o in enumerate(order)
        ]

    def memory_bytes(self) -> int:
        """Approximate resident size: vectors plus graphs (file size of each graph is close to its RAM)."""
        total = self.fused.nbytes
        for kind in KINDS:
            path = self._paths()[kind]
            if path.is_file():
                total += path.stat().st_size
        return total
