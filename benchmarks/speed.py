"""
Training and dev-set evaluation speed of each variant, ours against a baseline that works the way
the original code did: attention as an explicit masked softmax, torch's dropout, float32, eager,
the loss read back every step, and evaluation one question at a time with utils.sample.

    python benchmarks/speed.py [--device cuda] [--variants vanilla,rope] [--precisions fp32,bf16]
                               [--modes eager,compiled] [--pretrain] [--params DIR]

For each variant, precision and mode it prints and records the step time, tokens/s, MFU (on a
GPU whose peak it knows), compile time (the first steps' extra time) and peak memory; for each
variant, the evaluation time of both decoders. With --pretrain it also times a whole
`python src/run.py pretrain vanilla ...` process, with the first precision and the last mode.
The figures go to benchmarks/results/<device>.json (or --json), rewritten after each row so that
a run cut short keeps what it measured.

Run it from the repository root (it reads wiki.txt and birth_dev.tsv). With --params DIR it
evaluates DIR/<variant>.finetune.params, so that answers end early as trained ones do; without,
the weights are random and every answer runs the full 32 steps. This is a benchmark, not a test:
it prints figures and checks only that both decoders give the same predictions.
"""
import argparse
import ctypes
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
import dataset  # noqa: E402
import run  # noqa: E402
import trainer  # noqa: E402
import utils  # noqa: E402

# dense bfloat16 peak of the card, for MFU (datasheet figures)
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}
WARMUP_STEPS = 5


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def reset_peak_memory(device):
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    elif os.path.exists("/proc/self/clear_refs"):
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # give back what earlier rows freed but glibc kept
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # Linux: the resident set's high-water mark starts again from now


def peak_memory_mib(device):
    """Peak GPU memory allocated, or the process's peak resident memory, since reset_peak_memory."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2 ** 20
    if os.path.exists("/proc/self/status"):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # macOS: bytes, and never reset


def training_flops_per_step(gpt, batch_size, T):
    """6 FLOPs per parameter and token for the matrix products, plus the attention scores."""
    matrix_params = sum(p.numel() for n, p in gpt.named_parameters() if n not in ("tok_emb.weight", "pos_emb"))
    attention = 12 * gpt.n_layer * T * T * gpt.tok_emb.embedding_dim
    return (6 * matrix_params * T + attention) * batch_size


def pretraining_batches(corpus, batch_size, count):
    """`count` batches (x, y) of span-corruption examples of the corpus's documents, in order."""
    return [tuple(torch.stack(t) for t in zip(*(corpus[i % len(corpus)]
                                                for i in range(s * batch_size, (s + 1) * batch_size))))
            for s in range(count)]


def time_training(gpt, batches, device, baseline, precision="fp32", compile=False, micro_batch_size=None):
    """Step time, compile time and peak memory of training on `batches`, after WARMUP_STEPS steps."""
    config = trainer.TrainerConfig(learning_rate=6e-3, lr_decay=True, warmup_tokens=512 * 20, final_tokens=1e9,
                                   device=device, compile=compile, precision=precision,
                                   micro_batch_size=micro_batch_size)
    t = trainer.Trainer(gpt, None, None, config)
    optimizer = t.configure_optimizer()
    gpt.train()
    reset_peak_memory(device)
    sync(device)
    start = time.perf_counter()
    for i, (x, y) in enumerate(batches):
        if i == WARMUP_STEPS:
            sync(device)
            warmup_seconds = time.perf_counter() - start
            start = time.perf_counter()
        loss = t.step(x, y, optimizer)
        if baseline:
            loss.item()  # the original read the loss back after every step
    sync(device)
    step_seconds = (time.perf_counter() - start) / (len(batches) - WARMUP_STEPS)
    return {"step_ms": step_seconds * 1e3, "tokens_per_s": batches[0][1].numel() / step_seconds,
            "compile_s": max(0.0, warmup_seconds - WARMUP_STEPS * step_seconds) if compile else 0.0,
            "peak_memory_mib": peak_memory_mib(device)}


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


def time_pretraining(device, precision, compile, epochs):
    """Wall time of a whole pretraining process, as a user runs it: start-up and compiling included."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "src/run.py", "pretrain", "vanilla", "wiki.txt", "--device", device,
                   "--precision", precision, "--writing_params_path", os.path.join(tmp, "vanilla.pretrain.params"),
                   "--tb_expt_name", "speed_benchmark"] + (["--compile"] if compile else []) + (
                      ["--max_epochs", str(epochs)] if epochs else [])
        start = time.perf_counter()
        subprocess.run(command, check=True)
        return {"command": " ".join(command[1:]), "seconds": time.perf_counter() - start}


def device_name(device):
    if device.startswith("cuda"):
        return torch.cuda.get_device_name()
    if device == "cpu":
        return "CPU"
    return device.upper()


def main():
    argp = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    argp.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    argp.add_argument("--variants", default="vanilla,perceiver,synthesizer,rope")
    argp.add_argument("--precisions", default="fp32", help=f"some of {','.join(trainer.PRECISIONS)}")
    argp.add_argument("--modes", default="eager", help="eager, compiled (torch.compile), or both")
    argp.add_argument("--bottleneck_dim", type=int, default=64)
    argp.add_argument("--batch_size", type=int, default=run.RECIPE["pretrain"]["batch_size"])
    argp.add_argument("--micro_batch_size", type=int, help="ours only (the baseline takes the batch at once)")
    argp.add_argument("--train_steps", type=int, default=20, help=f"timed steps (after {WARMUP_STEPS} warm-up steps)")
    argp.add_argument("--rounds", type=int, default=3, help="timed rounds of each; the median is shown")
    argp.add_argument("--baseline_questions", type=int, default=100,
                      help="dev questions for the slow one-at-a-time loop (ours also runs on all 500); "
                           "0: no evaluation")
    argp.add_argument("--params", help="directory with <variant>.finetune.params to evaluate")
    argp.add_argument("--pretrain", action="store_true", help="also time a whole vanilla pretraining process")
    argp.add_argument("--pretrain_epochs", type=int, help="cut that pretraining short (default: the recipe's 650)")
    argp.add_argument("--json", help="where to write the figures (default: benchmarks/results/<device>.json)")
    args = argp.parse_args()
    device = trainer.resolve_device(args.device)
    name = device_name(device)
    json_path = args.json or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                          re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_") + ".json")
    os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
    torch.manual_seed(0)

    pretrain_dataset = dataset.CharCorruptionDataset(open("wiki.txt", encoding="utf-8").read(), run.BLOCK_SIZE)
    mask_id = pretrain_dataset.stoi[dataset.MASK_CHAR]
    questions = [line.split("\t")[0] for line in dataset.split_lines(open("birth_dev.tsv", encoding="utf-8").read())]
    prompts = [pretrain_dataset.encode(q + dataset.MASK_CHAR) for q in questions]
    start = time.perf_counter()
    batches = pretraining_batches(pretrain_dataset, args.batch_size, WARMUP_STEPS + args.train_steps)
    data_ms = (time.perf_counter() - start) / len(batches) * 1e3  # span corruption, in this one process
    peak = next((v for k, v in PEAK_FLOPS.items() if k in name), None)
    # the file keeps the rows of earlier runs on this device that this one does not measure again
    record = {"device": name, "training": [], "evaluation": []}
    if os.path.exists(json_path):
        with open(json_path) as f:
            record = json.load(f)
    run_facts = {"torch": torch.__version__, "cpu_threads": torch.get_num_threads(),
                 "command": "python " + " ".join(sys.argv), "date": time.strftime("%Y-%m-%d"),
                 "batch": f"{args.batch_size} x {run.BLOCK_SIZE - 1} tokens"}
    print(f"device: {name}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads; "
          f"training: batch {run_facts['batch']}; evaluation: greedy, 32 steps")
    print(f"making a batch of span-corrupted examples takes {data_ms:.1f} ms in one process")

    def put(kind, row, *key):
        """Record a row (in place of an earlier one with the same key) and rewrite the file."""
        row = {**row, **run_facts}
        record[kind] = [r for r in record.get(kind, []) if any(r.get(k) != row[k] for k in key)] + [row]
        with open(json_path, "w") as f:
            json.dump(record, f, indent=1)

    put("data", {"ms_per_batch_in_one_process": data_ms}, "batch")
    print(f"\n{'variant':12} {'precision':9} {'mode':8} {'base ms':>8} {'ours ms':>8} {'ours tok/s':>11} "
          f"{'ratio':>6} {'MFU':>6} {'compile s':>9} {'base MiB':>9} {'ours MiB':>9}")
    for variant in args.variants.split(","):
        ours = run.build_model(variant, args.bottleneck_dim, pretrain_dataset.vocab_size).to(device)
        if args.params:
            args.variant = variant
            run.load_params(ours, os.path.join(args.params, f"{variant}.finetune.params"), args)
            ours.to(device)
        base = run.build_model(variant, args.bottleneck_dim, pretrain_dataset.vocab_size, as_original=True).to(device)
        base.load_state_dict(ours.state_dict())
        start_state = {k: v.clone() for k, v in ours.state_dict().items()}
        trainer.set_precision("fp32")
        base_runs = [time_training(base, batches, device, baseline=True) for _ in range(args.rounds)]
        base_row = {k: statistics.median(r[k] for r in base_runs) for k in base_runs[0]}
        for precision in args.precisions.split(","):
            trainer.set_precision(precision)
            for mode in args.modes.split(","):
                runs = []
                for _ in range(args.rounds):
                    ours.load_state_dict(start_state)
                    runs.append(time_training(ours, batches, device, baseline=False, precision=precision,
                                              compile=mode == "compiled", micro_batch_size=args.micro_batch_size))
                row = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
                row["compile_s"] = runs[0]["compile_s"]  # later rounds reuse what the first one compiled
                flops = training_flops_per_step(ours, args.batch_size, run.BLOCK_SIZE - 1)
                mfu = flops / (row["step_ms"] / 1e3) / peak if peak else None
                put("training", {"variant": variant, "precision": precision, "mode": mode, **row, "mfu": mfu,
                                 "baseline": base_row}, "variant", "precision", "mode")
                mfu_text = f"{mfu:6.1%}" if mfu is not None else "     -"
                print(f"{variant:12} {precision:9} {mode:8} {base_row['step_ms']:8.1f} {row['step_ms']:8.1f} "
                      f"{row['tokens_per_s']:11.0f} {base_row['step_ms'] / row['step_ms']:6.2f} {mfu_text} "
                      f"{row['compile_s']:9.1f} {base_row['peak_memory_mib']:9.0f} {row['peak_memory_mib']:9.0f}")
        trainer.set_precision("fp32")

        if args.baseline_questions:
            ours.load_state_dict(start_state)
            base.load_state_dict(start_state)
            subset = prompts[:args.baseline_questions]
            base_s, base_answers = evaluate_time(base, subset, device, True, mask_id)
            ours_sub_s, ours_answers = evaluate_time(ours, subset, device, False, mask_id)
            ours_all_s, _ = evaluate_time(ours, prompts, device, False, mask_id)
            same = sum(a == b for a, b in zip(base_answers, ours_answers))
            put("evaluation", {"variant": variant, "questions": len(subset), "baseline_s": base_s, "ours_s": ours_sub_s,
                               "same_predictions": same, "ours_all_500_s": ours_all_s}, "variant")
            print(f"{'':12} evaluation of {len(subset)} dev questions: baseline {base_s:.2f} s, "
                  f"ours {ours_sub_s:.2f} s "
                  f"({base_s / ours_sub_s:.1f}x), {same} the same; ours on all 500: {ours_all_s:.2f} s")

    if args.pretrain:
        precision, mode = args.precisions.split(",")[0], args.modes.split(",")[-1]
        pretrain = time_pretraining(device, precision, mode == "compiled", args.pretrain_epochs)
        if not args.pretrain_epochs:
            record["pretrain_seconds"] = pretrain["seconds"]
        put("pretrain", pretrain | {"precision": precision, "mode": mode}, "precision", "mode")
        print(f"\nwhole vanilla pretraining ({precision}, {mode}): {pretrain['seconds']:.1f} s")
    print(f"figures written to {json_path}")


if __name__ == "__main__":
    main()
