"""
Plot the training-loss curves that run.py logged to TensorBoard, one line per run:

    python scripts/plot_losses.py [EXPT_DIR] [OUT_PNG]     (defaults: expt, report/losses.png)

Pretraining and finetuning get a column each; each run directory under EXPT_DIR/pretrain and
EXPT_DIR/finetune becomes one line there, labelled with its name, and the learning rate is drawn
below on the same steps.
"""
import glob
import os
import sys

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


def scalars(run_dir, tag):
    events = EventAccumulator(run_dir)
    events.Reload()
    if tag not in events.Tags()["scalars"]:
        return [], []
    points = events.Scalars(tag)
    return [p.step for p in points], [p.value for p in points]


def run_label(run_dir):
    """A run's name without the learning rates that every run directory's name ends with."""
    return os.path.basename(os.path.normpath(run_dir)).split("_pt_lr")[0]


def main():
    expt = sys.argv[1] if len(sys.argv) > 1 else "expt"
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.join("report", "losses.png")
    runs = {f: sorted(glob.glob(os.path.join(expt, f, "*"))) for f in ("pretrain", "finetune")}
    functions = [f for f in runs if runs[f]]
    if not functions:
        sys.exit(f"plot_losses.py: no runs under {expt}/pretrain or {expt}/finetune")
    # one column per function: their step counts differ a hundredfold
    fig, axes = plt.subplots(2, len(functions), figsize=(7 * len(functions), 7), squeeze=False,
                             sharex="col", height_ratios=[3, 1])
    for function, (loss_ax, lr_ax) in zip(functions, axes.T):
        for run_dir in runs[function]:
            loss_ax.plot(*scalars(run_dir, "train/loss"), label=run_label(run_dir), linewidth=0.8)
            lr_ax.plot(*scalars(run_dir, "train/lr"), linewidth=0.8)
        loss_ax.set_title(function)
        loss_ax.set_ylabel("train loss")
        loss_ax.set_ylim(0, 6)
        loss_ax.legend(fontsize=8)
        lr_ax.set_ylabel("learning rate")
        lr_ax.set_xlabel("step")
    fig.tight_layout()
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
