"""Encoder speed on this CPU: ROI encode time (batch 1 / batched, 3D and one-slice), text encode time,
training throughput, and a naive 4-layer 32-channel full-resolution 3D CNN as the baseline in the same run.

    python benchmarks/bench_encoders.py [--threads 2] [--repeats 10] [--model Resources/Model]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time


def timed(fn, repeats: int) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs (after one warm-up)."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--batch", type=int, default=16, help="batch size for the batched timings")
    parser.add_argument(
        "--model", default=None, help="model folder (default: the architecture of a new model)"
    )
    parser.add_argument("--no-text", action="store_true", help="skip the text model")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import numpy as np
    import torch
    from SimilarCaseRetrievalLib.encoders import CaseEncoder, ModelConfig
    from SimilarCaseRetrievalLib.encoders.image import NaiveCNN3d
    from SimilarCaseRetrievalLib.roi import RoiConfig
    from SimilarCaseRetrievalLib.training.augment import augment
    from SimilarCaseRetrievalLib.training.losses import InstanceClassifier

    torch.set_num_threads(args.threads)
    encoder = (
        CaseEncoder.load(args.model) if args.model else CaseEncoder.create(ModelConfig(labels=["a", "b"]))
    )
    cfg = encoder.config
    rng = np.random.default_rng(0)
    shape = (cfg.in_channels, *cfg.roi_shape)
    one = rng.normal(size=(1, *shape)).astype(np.float32)
    many = rng.normal(size=(args.batch, *shape)).astype(np.float32)
    print(f"CPU threads {args.threads}; model {encoder.version}; ROI (C, Z, Y, X) = {shape}")
    n_params = sum(p.numel() for p in encoder.net.image.parameters())
    print(f"image CNN: widths {list(cfg.widths)}, stem stride {cfg.stem_stride}, {n_params:,} parameters")

    t1 = timed(lambda: encoder.encode_rois(one), args.repeats)
    tb = (
        timed(lambda: encoder.encode_rois(many, batch_size=args.batch), max(2, args.repeats // 3))
        / args.batch
    )
    print(f"encode ROI, batch 1        : {t1 * 1000:8.1f} ms/ROI")
    print(f"encode ROI, batch {args.batch:<3d}      : {tb * 1000:8.1f} ms/ROI")

    naive = NaiveCNN3d(cfg.in_channels).eval()
    with torch.inference_mode():
        x = torch.from_numpy(one)
        tn = timed(lambda: naive(x), max(2, args.repeats // 3))
    print(f"naive 4x32ch full-res 3D CNN, batch 1: {tn * 1000:8.1f} ms/ROI  (ours is {tn / t1:.0f}x faster)")

    cfg2 = ModelConfig(sequences=["image"], roi=RoiConfig(grid=(96, 96, 1)), widths=cfg.widths)
    enc2 = CaseEncoder.create(cfg2)
    one2 = rng.normal(size=(1, 2, 1, 96, 96)).astype(np.float32)
    t2 = timed(lambda: enc2.encode_rois(one2), args.repeats)
    print(f"encode one-slice ROI (2, 1, 96, 96), batch 1: {t2 * 1000:8.1f} ms/ROI")

    # training throughput: augmentation + forward + backward + AdamW step (stage 1 losses minus text)
    net = encoder.net.image
    net.train()
    cls = InstanceClassifier(64, cfg.embed_dim)
    opt = torch.optim.AdamW(list(net.parameters()) + list(cls.parameters()), lr=1e-4)
    batch = torch.from_numpy(rng.normal(size=(32, *shape)).astype(np.float32))
    gen = torch.Generator().manual_seed(0)
    target = torch.arange(32)

    def step():
        out = net(augment(batch, gen))
        loss = torch.nn.functional.cross_entropy(cls(out["embedding"]), target)
        opt.zero_grad()
        loss.backward()
        opt.step()

    ts = timed(step, max(2, args.repeats // 5))
    print(f"training (augment + fwd + bwd + step, batch 32): {32 / ts:8.1f} ROIs/s")
    net.eval()

    if not args.no_text:
        texts = [
            f"Unilocular cyst with thin wall, {i} mm, no solid tissue; CA-125 {20 + i} U/mL."
            for i in range(32)
        ]
        t = time.perf_counter()
        encoder.encode_texts(texts[:1])
        print(f"text model load + first text: {time.perf_counter() - t:8.2f} s")
        tt1 = timed(lambda: encoder.encode_texts(texts[:1]), args.repeats)
        tt32 = timed(lambda: encoder.encode_texts(texts), max(2, args.repeats // 3)) / len(texts)
        quant = encoder.config.text_quantization
        print(f"encode text ({quant}), 1 text      : {tt1 * 1000:8.1f} ms/text")
        print(f"encode text ({quant}), 32 per call : {tt32 * 1000:8.1f} ms/text (one text per forward pass)")


if __name__ == "__main__":
    main()
