"""Does a shorter maximum text length (word pieces) keep retrieval? Numbers for docs/benchmarks.md.

For an archive indexed with the model (`similar-cases index`), re-encodes every case's text (notes + report)
with the sentence model truncated to each length and prints the CPU time per case, the mean cosine to the
full-length (256) text embedding, and leave-one-out label P@10 for text-only, fused (w = 0.3) and image-only
retrieval, plus the reports' token lengths.

    python benchmarks/bench_text_length.py --archive DIR [--model Resources/Model] [--lengths 256,192,128,64]
"""

from __future__ import annotations

import argparse
import os
import time


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--archive", required=True, help="an archive indexed with the model")
    parser.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    parser.add_argument(
        "--lengths", default="256,192,128,64", help="max word pieces to try (first: reference)"
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import numpy as np
    import torch
    from SimilarCaseRetrievalLib.encoders.text import embed_sentences
    from SimilarCaseRetrievalLib.index import fuse
    from SimilarCaseRetrievalLib.search import load_encoder
    from SimilarCaseRetrievalLib.store import CaseStore

    torch.set_num_threads(1)
    encoder = load_encoder(args.model)
    store = CaseStore(args.archive, create=False)
    ids, image = store.get_embeddings(encoder.version, "image")
    cases = {c.case_id: c for c in store.list_cases()}
    labels = np.array([cases[i].label for i in ids])
    texts = [cases[i].text for i in ids]
    model = encoder.sentence_model
    tokens = [len(model.tokenizer(t)["input_ids"]) for t in texts]
    print(
        f"{len(ids)} cases; model max_seq_length {model.max_seq_length}; text tokens min {min(tokens)}, "
        f"median {int(np.median(tokens))}, max {max(tokens)}; over 256: {sum(n > 256 for n in tokens)}"
    )

    def p_at(x: np.ndarray, k: int = 10) -> float:
        s = x @ x.T
        np.fill_diagonal(s, -np.inf)
        top = np.argsort(-s, axis=1)[:, :k]
        return float((labels[top] == labels[:, None]).mean())

    original, reference = model.max_seq_length, None
    try:
        for length in (int(x) for x in args.lengths.split(",")):
            model.max_seq_length = length
            t = time.process_time()
            raw = embed_sentences(model, texts)
            cpu = (time.process_time() - t) / len(texts)
            text = encoder.project_texts(raw)
            reference = text if reference is None else reference
            cos = float(np.mean(np.sum(reference * text, axis=1)))
            print(
                f"max {length:3d} word pieces: text {cpu * 1000:.0f} ms CPU/case, cosine to the first {cos:.3f}, "
                f"P@10 text {p_at(text):.3f}, fused {p_at(fuse(image, text)):.3f}, image {p_at(image):.3f}"
            )
    finally:
        model.max_seq_length = original


if __name__ == "__main__":
    main()
