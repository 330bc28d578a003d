"""
Measure how the forward pass of the vanilla and the perceiver model grows with the input length
ℓ and the bottleneck m, and plot it:

    python scripts/complexity.py [OUT_PNG]      (default report/complexity.png)

Per layer, vanilla self-attention costs O(ℓ² d) and its projections O(ℓ d²): O(L(ℓ² d + ℓ d²)).
The perceiver's down and up blocks cost O(ℓ m d) for attention and O(ℓ d²) for projections, and
its L-2 middle blocks O(m² d + m d²): O(ℓ m d + (L-2) m² d + L ℓ d²) — linear in ℓ for a fixed m.
At the assignment's size (d=256, ℓ<=127) the ℓ d² terms dominate both, so the study uses a wide
context and a narrow model (d=64, ℓ up to 2048) where the attention terms show.
"""
import os
import sys
import time

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
import model  # noqa: E402

BLOCK_SIZE, LAYERS, HEADS, EMBD, BATCH = 2048, 4, 4, 64, 4
LENGTHS = [128, 256, 512, 1024, 2048]
BOTTLENECKS = [16, 64, 256]


def forward_seconds(gpt, length, repeats=5):
    idx = torch.randint(0, 100, (BATCH, length))
    with torch.no_grad():
        gpt(idx)  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            gpt(idx)
            times.append(time.perf_counter() - start)
    return min(times)


def build(**options):
    torch.manual_seed(0)
    # the explicit masked softmax: the computation the complexity counts, without a fused kernel's tricks
    config = model.GPTConfig(100, BLOCK_SIZE, n_layer=LAYERS, n_head=HEADS, n_embd=EMBD,
                             as_original=True, **options)
    return model.GPT(config).eval()


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join("report", "complexity.png")
    curves = {"vanilla": [forward_seconds(build(), n) for n in LENGTHS]}
    for m in BOTTLENECKS:
        perceiver = build(perceiver=True, bottleneck_dim=m)
        curves[f"perceiver m={m}"] = [forward_seconds(perceiver, n) for n in LENGTHS]
    print("forward seconds, batch", BATCH, "| ℓ =", LENGTHS)
    for name, seconds in curves.items():
        print(f"{name:18}", " ".join(f"{s:7.4f}" for s in seconds))

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for name, seconds in curves.items():
        ax.plot(LENGTHS, seconds, marker="o", label=name)
    # reference slopes through the first vanilla point: linear and quadratic in ℓ
    first = curves["vanilla"][0]
    ax.plot(LENGTHS, [first * n / LENGTHS[0] for n in LENGTHS], "k:", linewidth=0.8, label="∝ ℓ")
    ax.plot(LENGTHS, [first * (n / LENGTHS[0]) ** 2 for n in LENGTHS], "k--", linewidth=0.8, label="∝ ℓ²")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("input length ℓ")
    ax.set_ylabel("forward time (s)")
    ax.set_title(f"forward pass, L={LAYERS}, d={EMBD}, batch {BATCH}, CPU")
    ax.legend()
    fig.tight_layout()
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
