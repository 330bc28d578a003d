"""
Training throughput and dev-set evaluation time of each variant, ours against a baseline that
works the way the original code did: attention as an explicit masked softmax, torch's dropout,
float32, the loss read back every step, and evaluation one question at a time with utils.sample.

    python benchmarks/speed.py [--device cuda] [--variants vanilla,perceiver] [--params DIR]

Run it from the repository root (it reads wiki.txt and birth_dev.tsv). With --params DIR it
evaluates DIR/<variant>.finetune.params, so that answers end early as trained ones do; without,
the weights are random and every answer runs the full 32 steps. This is a benchmark, not a test:
it prints figures and checks only that both decoders give the same predictions.
"""
import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
import dataset  # noqa: E402
import run  # noqa: E402
import trainer  # noqa: E402
import utils  # noqa: E402

# dense bfloat16 peak of the card, for MFU (datasheet figures)
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def training_flops_per_step(gpt, batch_size, T):
    """6 FLOPs per parameter and token for the matrix products, plus the attention scores."""
    matrix_params = sum(p.numel() for n, p in gpt.named_parameters() if n not in ("tok_emb.weight", "pos_emb"))
    attention = 12 * gpt.n_layer * T * T * gpt.tok_emb.embedding_dim
    return (6 * matrix_params * T + attention) * batch_size


def train_throughput(gpt, batches, device, baseline, compile=False):
    config = trainer.TrainerConfig(learning_rate=6e-3, lr_decay=True, warmup_tokens=512 * 20,
                                   final_tokens=1e9, device=device, compile=compile)
    t = trainer.Trainer(gpt, None, None, config)
    optimizer = t.configure_optimizer()
    gpt.train()
    warmup = 5
    for i, (x, y) in enumerate(batches):
        if i == warmup:
            sync(device)
            start = time.perf_counter()
        loss = t.step(x, y, optimizer)
        if baseline:
            loss.item()  # the original read the loss back after every step
    sync(device)
    steps = len(batches) - warmup
    return steps * batches[0][1].numel() / (time.perf_counter() - start)


def evaluate_time(gpt, prompts, device, one_at_a_time, mask_id):
    gpt.eval()
    sync(device)
    start = time.perf_counter()
    if one_at_a_time:
        completions = [utils.sample(gpt, p[None].to(device), 32)[0, len(p):].tolist() for p in prompts]
    else:
        completions = utils.greedy_decode(gpt, [p.to(device) for p in prompts], 32, stop_id=mask_id)
    sync(device)
    seconds = time.perf_counter() - start
    # the answer is what comes before the model's closing MASK
    answers = [c[:c.index(mask_id)] if mask_id in c else c for c in completions]
    return seconds, answers


def main():
    argp = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    argp.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    argp.add_argument("--variants", default="vanilla,perceiver,synthesizer,rope")
    argp.add_argument("--bottleneck_dim", type=int, default=64)
    argp.add_argument("--batch_size", type=int, default=run.RECIPE["pretrain"]["batch_size"])
    argp.add_argument("--train_steps", type=int, default=20, help="timed steps (after 5 warm-up steps)")
    argp.add_argument("--rounds", type=int, default=3, help="timed rounds of each; the median is shown")
    argp.add_argument("--baseline_questions", type=int, default=100,
                      help="dev questions for the slow one-at-a-time loop (ours also runs on all 500)")
    argp.add_argument("--params", help="directory with <variant>.finetune.params to evaluate")
    argp.add_argument("--compile", action="store_true", help="torch.compile our model for training")
    argp.add_argument("--tf32", action="store_true", help="TF32 matrix products on CUDA, for both models")
    args = argp.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    device = trainer.resolve_device(args.device)
    torch.manual_seed(0)

    pretrain_dataset = dataset.CharCorruptionDataset(open("wiki.txt", encoding="utf-8").read(), run.BLOCK_SIZE)
    mask_id = pretrain_dataset.stoi[dataset.MASK_CHAR]
    questions = [line.split("\t")[0] for line in dataset.split_lines(open("birth_dev.tsv", encoding="utf-8").read())]
    prompts = [pretrain_dataset.encode(q + dataset.MASK_CHAR) for q in questions]
    batches = [tuple(torch.stack(t) for t in zip(*(pretrain_dataset[i % len(pretrain_dataset)]
                                                   for i in range(s * args.batch_size, (s + 1) * args.batch_size))))
               for s in range(5 + args.train_steps)]
    name = torch.cuda.get_device_name() if device.startswith("cuda") else "CPU"
    peak = next((v for k, v in PEAK_FLOPS.items() if k in name), None)
    print(f"device: {name}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads")

    rows = []
    for variant in args.variants.split(","):
        ours = run.build_model(variant, args.bottleneck_dim, pretrain_dataset.vocab_size).to(device)
        if args.params:
            args.variant = variant
            run.load_params(ours, os.path.join(args.params, f"{variant}.finetune.params"), args)
            ours.to(device)
        base = run.build_model(variant, args.bottleneck_dim, pretrain_dataset.vocab_size, as_original=True).to(device)
        base.load_state_dict(ours.state_dict())
        eval_state = {k: v.clone() for k, v in ours.state_dict().items()}

        # alternate the two, and take the median, so that a busy machine slows both alike
        rounds = [(train_throughput(base, batches, device, baseline=True),
                   train_throughput(ours, batches, device, baseline=False, compile=args.compile))
                  for _ in range(args.rounds)]
        base_tps, ours_tps = (statistics.median(r) for r in zip(*rounds))
        mfu = (training_flops_per_step(ours, args.batch_size, run.BLOCK_SIZE - 1) * ours_tps
               / (args.batch_size * (run.BLOCK_SIZE - 1)) / peak) if peak else None

        ours.load_state_dict(eval_state)
        base.load_state_dict(eval_state)
        subset = prompts[:args.baseline_questions]
        base_s, base_answers = evaluate_time(base, subset, device, True, mask_id)
        ours_sub_s, ours_answers = evaluate_time(ours, subset, device, False, mask_id)
        ours_all_s, _ = evaluate_time(ours, prompts, device, False, mask_id)
        same = sum(a == b for a, b in zip(base_answers, ours_answers))
        rows.append((variant, base_tps, ours_tps, mfu, base_s, ours_sub_s, ours_all_s, same, len(subset)))

    print(f"\ntraining: batch {args.batch_size} x {run.BLOCK_SIZE - 1} tokens"
          f"{', compiled' if args.compile else ''}{', TF32' if args.tf32 else ''}; evaluation: greedy, 32 steps")
    print(f"{'variant':12} {'base tok/s':>11} {'ours tok/s':>11} {'ratio':>6} {'MFU':>6} | "
          f"{'base eval s':>11} {'ours eval s':>11} {'ratio':>6} {'same':>8} | {'ours, 500 q':>11}")
    for variant, base_tps, ours_tps, mfu, base_s, ours_sub_s, ours_all_s, same, n in rows:
        mfu_text = f"{mfu:6.1%}" if mfu is not None else "     -"
        print(f"{variant:12} {base_tps:11.0f} {ours_tps:11.0f} {ours_tps / base_tps:6.2f} {mfu_text} | "
              f"{base_s:11.2f} {ours_sub_s:11.2f} {base_s / ours_sub_s:6.1f} {same:>4}/{n:<3} | {ours_all_s:11.2f}")


if __name__ == "__main__":
    main()
