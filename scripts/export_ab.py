"""Interleaved A/B latency: torch vs ONNX Runtime, and NumPy vs baked pre-processing (same process, same load)."""
import statistics as st
import sys
import time

import numpy as np
import torch

from coreface_edge.contract import preprocess_crops
from coreface_edge.export.parity import load_parity_crops
from coreface_edge.runtime import open_backend

B = sys.argv[1] if len(sys.argv) > 1 else "bench/export"
torch.set_num_threads(2)
faces = load_parity_crops()


def batch_of(n):
    return np.ascontiguousarray(np.resize(faces, (n, 112, 112, 3)))


def ab(fa, fb, x, iters, rounds=4, warmup=2):
    """Alternating blocks of ``iters`` calls (A block, B block, ...), a pause between blocks so the
    other runtime's spinning worker threads are idle; medians per runtime and their ratio."""
    ta, tb = [], []
    for r in range(rounds):
        for f, t in ((fa, ta), (fb, tb)) if r % 2 == 0 else ((fb, tb), (fa, ta)):
            time.sleep(0.5)
            for _ in range(warmup):
                f(x)
            for _ in range(iters):
                s = time.perf_counter(); f(x); t.append((time.perf_counter() - s) * 1e3)
    return st.median(ta), st.median(tb), st.median(ta) / st.median(tb)


print("| model | batch | PyTorch eager ms (p50) | ORT FP32 ms (p50) | PyTorch / ORT (ratio of medians) |")
print("|---|---|---|---|---|")
for arch, iters in (("mobilefacenet", 10), ("iresnet50", 3)):
    ref, ort = open_backend(f"{B}/{arch}.pt"), open_backend(f"{B}/{arch}.onnx", threads=2)
    for n in (1, 8):
        a, b, r = ab(ref.embed, ort.embed, batch_of(n), iters)
        print(f"| {arch} | {n} | {a:.1f} | {b:.1f} | {r:.2f}x |", flush=True)
    del ref, ort

print()
print("| batch | NumPy preprocess ms/face | ORT embed incl. NumPy preprocess ms/face | ORT baked graph ms/face | external / baked |")
print("|---|---|---|---|---|")
plain, baked = open_backend(f"{B}/mobilefacenet.onnx", threads=2), open_backend(f"{B}/mobilefacenet.baked.onnx", threads=2)
for n in (1, 8):
    x = batch_of(n)
    pre = []
    for _ in range(200):
        s = time.perf_counter(); preprocess_crops(x); pre.append((time.perf_counter() - s) * 1e3)
    a, b, r = ab(plain.embed, baked.embed, x, 15)
    print(f"| {n} | {st.median(pre) / n:.3f} | {a / n:.2f} | {b / n:.2f} | {r:.2f}x |", flush=True)
