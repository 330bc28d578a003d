"""
Print the training loss that run.py logged to TensorBoard, as a table of runs against steps, so
that runs can be compared at the same point of their schedule (a run still going included):

    python scripts/loss_table.py RUN_DIR [RUN_DIR ...] [--steps 500,1000,1500] [--window 100]

Each cell is the mean of the losses logged in the `window` steps up to and including that step
(the loss moves by 0.02-0.03 on average from one logged step to the next, 10 steps later), blank
where the run has not got that far.
"""
import argparse
import sys

from plot_losses import run_label, scalars


def mean_loss_before(steps, losses, step, window):
    """The mean of the losses logged at steps in (step - window, step]; None if there are none."""
    chosen = [loss for s, loss in zip(steps, losses) if step - window < s <= step]
    return sum(chosen) / len(chosen) if chosen else None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("run_dirs", nargs="+", help="TensorBoard log folders of runs")
    parser.add_argument("--steps", default="500,1000,1500",
                        help="comma-separated steps to show (default: %(default)s)")
    parser.add_argument("--window", type=int, default=100,
                        help="steps averaged up to each shown step (default: %(default)s)")
    args = parser.parse_args()
    try:
        shown = [int(s) for s in args.steps.split(",")]
    except ValueError:
        parser.error(f"--steps must be comma-separated integers, not {args.steps!r}")
    rows = ["run".ljust(40) + "".join(f"{s:>8}" for s in shown)]
    for run_dir in args.run_dirs:  # every run read before anything is printed
        steps, losses = scalars(run_dir, "train/loss")
        if not steps:
            sys.exit(f"loss_table.py: {run_dir}: no train/loss logged there")
        cells = [mean_loss_before(steps, losses, s, args.window) for s in shown]
        rows.append(run_label(run_dir).ljust(40)
                    + "".join(f"{c:8.3f}" if c is not None else " " * 8 for c in cells))
    print("\n".join(rows))


if __name__ == "__main__":
    main()
