"""
Pretrain, finetune and evaluate the birth-place model:

    python src/run.py pretrain|finetune|evaluate vanilla|perceiver|synthesizer wiki.txt [options]

Every function takes the pretraining corpus, because the vocabulary is built from it.
"""
import argparse
import contextlib
import csv
import os
import sys

import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

import dataset
import model
import trainer
import utils

BLOCK_SIZE = 128
ANSWER_STEPS = 32  # characters decoded after each question

# what each variant changes in the model's configuration
VARIANTS = {
    "vanilla": lambda args: {},
    "synthesizer": lambda args: {"synthesizer": True},
    "perceiver": lambda args: {"perceiver": True, "bottleneck_dim": args.bottleneck_dim},
}


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The description as written, and the default after each option's help (where there is one)."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)


def parse_args(argv=None):
    argp = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    argp.add_argument("function", choices=["pretrain", "finetune", "evaluate"])
    argp.add_argument("variant", choices=list(VARIANTS))
    argp.add_argument("pretrain_corpus_path", help="the pretraining corpus (wiki.txt); gives the vocabulary")
    argp.add_argument("--reading_params_path", help="params to start from (finetune) or to evaluate")
    argp.add_argument("--writing_params_path", help="where pretrain/finetune save the params")
    argp.add_argument("--finetune_corpus_path", help="question<TAB>place lines to finetune on")
    argp.add_argument("--eval_corpus_path", help="questions (with or without places) to evaluate on; - reads them "
                                                 "from standard input")
    argp.add_argument("--outputs_path", help="where evaluate writes one prediction per line; - writes them to "
                                             "standard output, and everything else to standard error")
    argp.add_argument("--predictions_csv", help="evaluate also writes question,gold,prediction,correct rows here")
    argp.add_argument("--pretrain_lr", default=6e-3, type=float, help="peak learning rate of pretraining")
    argp.add_argument("--finetune_lr", default=6e-4, type=float, help="peak learning rate of finetuning")
    argp.add_argument("--bottleneck_dim", type=int, default=32, help="perceiver basis length m")
    argp.add_argument("--tb_expt_name", default="run", help="TensorBoard experiment name under expt/")
    # not in the original assignment
    argp.add_argument("--max_epochs", type=int, help="override the number of epochs, for quick runs (default: the assignment's, 650 to "
                           "pretrain, 75 to finetune from scratch, 10 from pretrained params)")
    argp.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                      help="auto: CUDA when available, else an Apple GPU (MPS), else the CPU")
    argp.add_argument("--seed", type=int, default=0, help="seed for every random number generator")
    argp.add_argument("--num_workers", type=int,
                      help="data-loading processes (default: 4 on CUDA, as the original; 0 elsewhere)")
    argp.add_argument("--checkpoint_every", type=int, default=10,
                      help="epochs between resumable checkpoints, <writing_params_path>.ckpt (0: only on Ctrl-C)")
    argp.add_argument("--resume", action="store_true",
                      help="go on from <writing_params_path>.ckpt, left by an interrupted run")
    argp.add_argument("--compile", action="store_true", help="torch.compile the model for training")
    argp.add_argument("--tf32", action="store_true",
                      help="on CUDA, multiply float32 matrices in TF32 (as REPORT.md's runs did; the original did not)")
    return argp.parse_args(argv)


# the path options each function requires, and those it reads when they are given
REQUIRED_PATHS = {
    "pretrain": ["writing_params_path"],
    "finetune": ["writing_params_path", "finetune_corpus_path"],
    "evaluate": ["reading_params_path", "eval_corpus_path", "outputs_path"],
}
OPTIONAL_PATHS = {"pretrain": [], "finetune": ["reading_params_path"], "evaluate": ["predictions_csv"]}
PATH_OPTIONS = ["reading_params_path", "writing_params_path", "finetune_corpus_path", "eval_corpus_path",
                "outputs_path", "predictions_csv"]


def check_args(args):
    """Refuse what cannot work before any time is spent; warn about what will be ignored."""
    for option in REQUIRED_PATHS[args.function]:
        if getattr(args, option) is None:
            raise dataset.DataError(f"{args.function} needs --{option}")
    used = REQUIRED_PATHS[args.function] + OPTIONAL_PATHS[args.function]
    for option in ("writing_params_path", "outputs_path", "predictions_csv"):
        path = getattr(args, option)
        if option in used and path is not None and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise dataset.DataError(f"--{option} {path}: the directory {os.path.dirname(path)} does not exist")
    if args.variant == "perceiver" and not 1 <= args.bottleneck_dim < BLOCK_SIZE:
        raise dataset.DataError(f"--bottleneck_dim {args.bottleneck_dim}: must be between 1 and {BLOCK_SIZE - 1}")
    ignored = [f"--{o}" for o in PATH_OPTIONS if o not in used and getattr(args, o) is not None]
    if args.variant != "perceiver" and args.bottleneck_dim != 32:
        ignored.append("--bottleneck_dim")
    if args.resume and args.function == "evaluate":
        ignored.append("--resume")
    if ignored:
        print(f"warning: {args.function} {args.variant} ignores {', '.join(ignored)}", file=sys.stderr)


def read_text(path, what):
    if path == "-":
        if sys.stdin.isatty():
            print("type one question per line; end with Ctrl-D", file=sys.stderr)
        return sys.stdin.read()
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise dataset.DataError(f"{path}: cannot read the {what}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise dataset.DataError(f"{path}: the {what} is not UTF-8 text ({e.reason} at byte {e.start})") from None


def describe_variant(variant, bottleneck_dim):
    return f"perceiver with --bottleneck_dim {bottleneck_dim}" if variant == "perceiver" else variant


def load_params(gpt, path, args):
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise dataset.DataError(f"{path}: no such params file") from None
    except Exception:  # whatever torch.load raises on a file that is not a saved state_dict
        raise dataset.DataError(f"{path}: not a params file") from None
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise dataset.DataError(f"{path}: not a params file (no state_dict in it)")
    try:
        gpt.load_state_dict(state)
    except RuntimeError:
        # name the variant that wrote the file, from the parameters only it has
        if "down_block.C" in state:
            written_by = describe_variant("perceiver", state["down_block.C"].size(1))
        else:
            written_by = "synthesizer" if "blocks.0.attn.w1.weight" in state else "vanilla"
        raise dataset.DataError(f"{path}: these params are for the {written_by} model, not for "
                                f"{describe_variant(args.variant, args.bottleneck_dim)}") from None


def save_params(gpt, path):
    utils.write_atomically(path, lambda f: torch.save(gpt.state_dict(), f), mode="wb")


def tensorboard_writer(args):
    return SummaryWriter(log_dir="expt/%s/%s_%s_%d_pt_lr_%f_ft_lr_%f" % (
        args.function, args.tb_expt_name, args.variant, args.bottleneck_dim,
        args.pretrain_lr, args.finetune_lr))


def train(args, gpt, train_dataset, pretrain_dataset, max_epochs, batch_size, learning_rate):
    max_epochs = args.max_epochs or max_epochs
    checkpoint_path = args.writing_params_path + ".ckpt"
    if args.resume and not os.path.exists(checkpoint_path):
        raise dataset.DataError(f"{checkpoint_path}: no checkpoint to resume from")
    config = trainer.TrainerConfig(
        max_epochs=max_epochs, batch_size=batch_size, learning_rate=learning_rate,
        lr_decay=True, warmup_tokens=512 * 20, final_tokens=200 * len(pretrain_dataset) * BLOCK_SIZE,
        num_workers=args.num_workers, writer=tensorboard_writer(args), device=args.device,
        compile=args.compile, checkpoint_path=checkpoint_path, checkpoint_every=args.checkpoint_every,
        checkpoint_tag=f"{args.function} {describe_variant(args.variant, args.bottleneck_dim)}, "
                       f"epochs={max_epochs} lr={learning_rate} from={args.reading_params_path}")
    try:
        trainer.Trainer(gpt, train_dataset, None, config).train(resume=args.resume)
    finally:
        config.writer.close()
    save_params(gpt, args.writing_params_path)
    if os.path.exists(checkpoint_path):
        os.remove(checkpoint_path)  # the run is complete: its params file supersedes it


def pretrain(args, gpt, pretrain_dataset):
    train(args, gpt, pretrain_dataset, pretrain_dataset,
          max_epochs=650, batch_size=128, learning_rate=args.pretrain_lr)


def finetune(args, gpt, pretrain_dataset):
    finetune_dataset = dataset.NameDataset(
        pretrain_dataset, read_text(args.finetune_corpus_path, "finetuning corpus"),
        name=args.finetune_corpus_path)
    if args.reading_params_path is not None:
        load_params(gpt, args.reading_params_path, args)
    # from scratch the model needs many more epochs than from pretrained params
    max_epochs = 10 if args.reading_params_path is not None else 75
    train(args, gpt, finetune_dataset, pretrain_dataset,
          max_epochs=max_epochs, batch_size=256, learning_rate=args.finetune_lr)


def evaluate(args, gpt, pretrain_dataset, stdout):
    load_params(gpt, args.reading_params_path, args)
    lines = dataset.split_lines(read_text(args.eval_corpus_path, "evaluation corpus"))
    source = "standard input" if args.eval_corpus_path == "-" else args.eval_corpus_path
    if not lines:
        raise dataset.DataError(f"{source}: is empty")
    gpt.to(trainer.resolve_device(args.device))
    prompts, unknown_lines = [], 0
    for lineno, line in enumerate(lines, start=1):
        question = line.split("\t")[0]
        if len(question) + ANSWER_STEPS > BLOCK_SIZE:
            raise dataset.DataError(f"{source}: line {lineno}: the question has {len(question)} "
                                    f"characters; at most {BLOCK_SIZE - ANSWER_STEPS} leave room for the answer")
        # characters the vocabulary lacks are left out of the question, as NameDataset leaves
        # out non-ASCII ones
        known = [c for c in question if c in pretrain_dataset.stoi]
        unknown_lines += len(known) < len(question)
        prompts.append(pretrain_dataset.encode("".join(known) + dataset.MASK_CHAR))
    if unknown_lines:
        print(f"warning: {unknown_lines} questions had characters outside the vocabulary, left out",
              file=sys.stderr)
    mask_id = pretrain_dataset.stoi[dataset.MASK_CHAR]
    completions = []
    batch = 512
    for start in tqdm(range(0, len(prompts), batch), desc="evaluate", unit="batch"):
        completions += utils.greedy_decode(gpt, prompts[start:start + batch], ANSWER_STEPS, stop_id=mask_id)
    # the prediction is what the model wrote between the question's MASK and its own
    predictions = ["".join(pretrain_dataset.itos[i] for i in c).split(dataset.MASK_CHAR)[0]
                   for c in completions]
    if args.outputs_path == "-":
        stdout.writelines(p + "\n" for p in predictions)
        stdout.flush()
    else:
        utils.write_atomically(args.outputs_path, lambda f: f.writelines(p + "\n" for p in predictions))
    if args.predictions_csv:
        utils.write_atomically(args.predictions_csv, lambda f: write_predictions_csv(f, lines, predictions))
    total, correct = utils.count_correct_places(lines, predictions)
    if total > 0:
        print(f"Correct: {correct} out of {total}: {correct / total * 100}%")
    else:
        where = "standard output" if args.outputs_path == "-" else args.outputs_path
        print(f"Predictions written to {where}; no targets provided")


def write_predictions_csv(f, lines, predictions):
    """One row per question for error analysis; gold and correct stay empty without gold places."""
    writer = csv.writer(f, lineterminator="\n")
    writer.writerow(["question", "gold", "prediction", "correct"])
    for line, prediction in zip(lines, predictions):
        question, _, gold = line.strip().partition("\t")  # as evaluate_places reads the gold place
        writer.writerow([question, gold, prediction, int(gold == prediction) if gold else ""])


def main(argv=None):
    args = parse_args(argv)
    stdout = sys.stdout
    # with --outputs_path -, standard output carries the predictions and nothing else
    with contextlib.redirect_stdout(sys.stderr if args.outputs_path == "-" else stdout):
        run_function(args, stdout)


def run_function(args, stdout):
    check_args(args)
    if args.device != "auto" and not trainer.device_available(args.device):
        raise dataset.DataError(f"--device {args.device}: no {args.device.upper()} device is available")
    if args.num_workers is None:
        # the original's 4 workers on CUDA; elsewhere the main process loads the data (it keeps
        # up with a CPU, and worker processes are a known source of hangs on macOS)
        args.num_workers = 4 if trainer.resolve_device(args.device) == "cuda" else 0
    utils.set_seed(args.seed)
    # TF32 rounds the factors of each product to 10-bit mantissas and sums in float32
    torch.backends.cuda.matmul.allow_tf32 = args.tf32

    text = read_text(args.pretrain_corpus_path, "pretraining corpus")
    pretrain_dataset = dataset.CharCorruptionDataset(text, BLOCK_SIZE, name=args.pretrain_corpus_path)
    mconf = model.GPTConfig(pretrain_dataset.vocab_size, pretrain_dataset.block_size,
                            n_layer=4, n_head=8, n_embd=256, **VARIANTS[args.variant](args))
    gpt = model.GPT(mconf)
    if args.function == "evaluate":
        evaluate(args, gpt, pretrain_dataset, stdout)
    else:
        {"pretrain": pretrain, "finetune": finetune}[args.function](args, gpt, pretrain_dataset)


if __name__ == "__main__":
    try:
        main()
    except (dataset.DataError, trainer.CheckpointMismatch) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except trainer.TrainingStopped as e:
        print(f"stopped: {e}", file=sys.stderr)
        sys.exit(1)
