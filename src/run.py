"""
Pretrain, finetune and evaluate the birth-place model:

    python src/run.py pretrain|finetune|evaluate vanilla|synthesizer|perceiver|rope wiki.txt [options]

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

# The assignment's recipe: the model's size, and for each way of training the epochs, the batch
# size and the option that gives the peak learning rate. From scratch the model needs many more
# epochs than from pretrained params. (The schedule's warmup and final tokens are in trainer_config().)
RECIPE = {
    "model": {"block_size": 128, "n_layer": 4, "n_head": 8, "n_embd": 256},
    "pretrain": {"max_epochs": 650, "batch_size": 128, "learning_rate": "pretrain_lr"},
    "finetune from scratch": {"max_epochs": 75, "batch_size": 256, "learning_rate": "finetune_lr"},
    "finetune from params": {"max_epochs": 10, "batch_size": 256, "learning_rate": "finetune_lr"},
}
BLOCK_SIZE = RECIPE["model"]["block_size"]
ANSWER_STEPS = 32  # characters decoded after each question
# a CPU trains the batch in slices of this many examples: a quarter of the memory of finetuning's
# 256 at once, and no slower
CPU_MICRO_BATCH = 64


def variant_options(variant, bottleneck_dim):
    """GPTConfig's options for the variant named on the command line."""
    if variant == "vanilla":
        return {}
    return {variant: True, **({"bottleneck_dim": bottleneck_dim} if variant == "perceiver" else {})}


def build_model(variant, bottleneck_dim, vocab_size, **options):
    """The assignment's model of a variant, over the pretraining corpus's vocabulary."""
    return model.GPT(model.GPTConfig(vocab_size, **RECIPE["model"], **variant_options(variant, bottleneck_dim),
                                     **options))


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The description as written, and the default after each option's help (where there is one)."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)


def parse_args(argv=None):
    argp = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    argp.add_argument("function", choices=["pretrain", "finetune", "evaluate"])
    argp.add_argument("variant", choices=list(model.VARIANTS))
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
    argp.add_argument("--max_epochs", type=int, help="override the number of epochs, for quick runs (default: "
                                                     "the assignment's, 650 to pretrain, 75 to finetune from "
                                                     "scratch, 10 from pretrained params)")
    argp.add_argument("--shuffle", action="store_true",
                      help="reshuffle the examples every epoch (the original visits them in order)")
    argp.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                      help="auto: CUDA when available, else an Apple GPU (MPS), else the CPU")
    argp.add_argument("--seed", type=int, default=0, help="seed for every random number generator")
    argp.add_argument("--num_workers", type=int,
                      help="data-loading processes (default: 4 on CUDA, as the original; 0 elsewhere)")
    argp.add_argument("--checkpoint_every", type=int, default=10,
                      help="epochs between resumable checkpoints, <writing_params_path>.ckpt (0: only on Ctrl-C)")
    argp.add_argument("--resume", action="store_true",
                      help="go on from <writing_params_path>.ckpt, left by an interrupted run")
    argp.add_argument("--compile", action="store_true",
                      help="torch.compile the forward and backward passes for training (CUDA graphs on one GPU)")
    argp.add_argument("--precision", default="fp32", choices=list(trainer.PRECISIONS),
                      help="; ".join(f"{k}: {v}" for k, v in trainer.PRECISIONS.items()))
    argp.add_argument("--tf32", action="store_const", dest="precision", const="tf32",
                      help="the same as --precision tf32 (REPORT.md's GPU runs used it)")
    argp.add_argument("--micro_batch_size", type=int,
                      help="examples per forward and backward pass, the same gradient in less memory "
                           f"(default: {CPU_MICRO_BATCH} on the CPU, the whole batch on a GPU)")
    return argp.parse_args(argv)


# Every path option: whether the run reads or writes the file, and the functions that use it,
# "required" or "optional" (read when given). The pretraining corpus, an argument, is always read.
PATH_OPTIONS = {
    "reading_params_path": ("reads", {"finetune": "optional", "evaluate": "required"}),
    "writing_params_path": ("writes", {"pretrain": "required", "finetune": "required"}),
    "finetune_corpus_path": ("reads", {"finetune": "required"}),
    "eval_corpus_path": ("reads", {"evaluate": "required"}),
    "outputs_path": ("writes", {"evaluate": "required"}),
    "predictions_csv": ("writes", {"evaluate": "optional"}),
}


def same_file(a, b):
    return os.path.realpath(a) == os.path.realpath(b) or (
        os.path.exists(a) and os.path.exists(b) and os.path.samefile(a, b))


def check_args(args):
    """Refuse what cannot work before any time is spent; warn about what will be ignored."""
    used = [o for o, (_, functions) in PATH_OPTIONS.items() if args.function in functions]
    for option in used:
        if PATH_OPTIONS[option][1][args.function] == "required" and getattr(args, option) is None:
            raise dataset.UserError(f"{args.function} needs --{option}")
    # the paths given, less "-" (standard input or output, which no file can clash with)
    given = [o for o in used if getattr(args, o) not in (None, "-")]
    outputs = [o for o in given if PATH_OPTIONS[o][0] == "writes"]
    for option in outputs:
        path = getattr(args, option)
        if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise dataset.UserError(f"--{option} {path}: the directory {os.path.dirname(path)} does not exist")
    # an output written over an input, or over another output, would lose a file
    names = [("the pretraining corpus", args.pretrain_corpus_path)] + [(f"--{o}", getattr(args, o)) for o in given]
    for option in outputs:
        path = getattr(args, option)
        for name, other in names:
            if name != f"--{option}" and same_file(path, other):
                raise dataset.UserError(f"--{option} {path}: is also {name}; writing it would lose that file")
    if args.variant == "perceiver" and not 1 <= args.bottleneck_dim < BLOCK_SIZE:
        raise dataset.UserError(f"--bottleneck_dim {args.bottleneck_dim}: must be between 1 and {BLOCK_SIZE - 1}")
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
        raise dataset.UserError(f"{path}: cannot read the {what}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise dataset.UserError(f"{path}: the {what} is not UTF-8 text ({e.reason} at byte {e.start})") from None


def describe_variant(variant, bottleneck_dim):
    return f"perceiver with --bottleneck_dim {bottleneck_dim}" if variant == "perceiver" else variant


def why_params_do_not_fit(gpt, state, args):
    variant = model.variant_of(state)
    written_by = describe_variant(variant, state["down_block.C"].size(1) if variant == "perceiver" else None)
    wanted = describe_variant(args.variant, args.bottleneck_dim)
    if written_by != wanted:
        return f"these params are for the {written_by} model, not for {wanted}"
    embedding, vocab_size = state.get("tok_emb.weight"), gpt.tok_emb.num_embeddings
    if embedding is not None and embedding.size(0) != vocab_size:
        return (f"these params have a vocabulary of {embedding.size(0)} symbols, {args.pretrain_corpus_path} "
                f"gives {vocab_size}: name the pretraining corpus they were trained with")
    return f"these params are not those of the assignment's {wanted} model"


def load_params(gpt, path, args):
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise dataset.UserError(f"{path}: no such params file") from None
    except Exception:  # whatever torch.load raises on a file that is not a saved state_dict
        raise dataset.UserError(f"{path}: not a params file") from None
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise dataset.UserError(f"{path}: not a params file (no state_dict in it)")
    try:
        gpt.load_state_dict(state)
    except RuntimeError:
        raise dataset.UserError(f"{path}: {why_params_do_not_fit(gpt, state, args)}") from None


def save_params(gpt, path):
    utils.write_atomically(path, lambda f: torch.save(gpt.state_dict(), f), mode="wb")


def tensorboard_writer(args):
    return SummaryWriter(log_dir="expt/%s/%s_%s_%d_pt_lr_%f_ft_lr_%f" % (
        args.function, args.tb_expt_name, args.variant, args.bottleneck_dim,
        args.pretrain_lr, args.finetune_lr))


def trainer_config(args, pretrain_dataset, recipe, **options):
    """RECIPE[recipe]'s epochs, batch size and peak learning rate, the original's schedule (no
    warmup to speak of, decay over 200 passes' worth of pretraining tokens) and the command line's
    training options; `options` add the rest of TrainerConfig."""
    return trainer.TrainerConfig(
        max_epochs=args.max_epochs or RECIPE[recipe]["max_epochs"], batch_size=RECIPE[recipe]["batch_size"],
        learning_rate=getattr(args, RECIPE[recipe]["learning_rate"]),
        lr_decay=True, warmup_tokens=512 * 20, final_tokens=200 * len(pretrain_dataset) * BLOCK_SIZE,
        num_workers=args.num_workers, shuffle=args.shuffle, device=args.device, compile=args.compile,
        precision=args.precision, micro_batch_size=args.micro_batch_size, **options)


def train(args, gpt, train_dataset, pretrain_dataset, recipe):
    """Train as RECIPE[recipe] says, then save the params."""
    checkpoint_path = args.writing_params_path + ".ckpt"
    if args.resume and not os.path.exists(checkpoint_path):
        raise dataset.UserError(f"{checkpoint_path}: no checkpoint to resume from")
    config = trainer_config(
        args, pretrain_dataset, recipe,
        # the processes of a torchrun job train alike: the first one alone writes logs and files
        writer=tensorboard_writer(args) if args.rank == 0 else None,
        checkpoint_path=checkpoint_path, checkpoint_every=args.checkpoint_every)
    config.checkpoint_tag = (f"{args.function} {describe_variant(args.variant, args.bottleneck_dim)}, "
                             f"epochs={config.max_epochs} lr={config.learning_rate} from={args.reading_params_path}")
    try:
        trainer.Trainer(gpt, train_dataset, None, config).train(resume=args.resume)
    finally:
        if config.writer:
            config.writer.close()
    if args.rank == 0:
        save_params(gpt, args.writing_params_path)
        if os.path.exists(checkpoint_path):
            os.remove(checkpoint_path)  # the run is complete: its params file supersedes it


def pretrain(args, gpt, pretrain_dataset):
    train(args, gpt, pretrain_dataset, pretrain_dataset, "pretrain")


def finetune(args, gpt, pretrain_dataset):
    finetune_dataset = dataset.NameDataset(
        pretrain_dataset, read_text(args.finetune_corpus_path, "finetuning corpus"),
        name=args.finetune_corpus_path)
    if args.reading_params_path is not None:
        load_params(gpt, args.reading_params_path, args)
        train(args, gpt, finetune_dataset, pretrain_dataset, "finetune from params")
    else:
        train(args, gpt, finetune_dataset, pretrain_dataset, "finetune from scratch")


def prompt_text(question, pretrain_dataset):
    """What the model reads before answering: the question, less the characters the vocabulary
    lacks (as NameDataset leaves out non-ASCII ones), then MASK."""
    return "".join(c for c in question if c in pretrain_dataset.stoi) + dataset.MASK_CHAR


def check_question_length(gpt, question, where):
    if len(question) + ANSWER_STEPS > gpt.get_block_size():
        raise dataset.UserError(f"{where}: the question has {len(question)} characters; at most "
                                f"{gpt.get_block_size() - ANSWER_STEPS} leave room for the answer")


def evaluate(args, gpt, pretrain_dataset, stdout):
    load_params(gpt, args.reading_params_path, args)
    lines = dataset.split_lines(read_text(args.eval_corpus_path, "evaluation corpus"))
    source = "standard input" if args.eval_corpus_path == "-" else args.eval_corpus_path
    if not lines:
        raise dataset.UserError(f"{source}: is empty")
    gpt.to(trainer.resolve_device(args.device))
    prompts, unknown_lines = [], 0
    for lineno, line in enumerate(lines, start=1):
        question = line.split("\t")[0]
        check_question_length(gpt, question, f"{source}: line {lineno}")
        prompt = prompt_text(question, pretrain_dataset)
        unknown_lines += len(prompt) - 1 < len(question)
        prompts.append(pretrain_dataset.encode(prompt))
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
        question, gold = utils.split_question_line(line)
        writer.writerow([question, gold, prediction, "" if gold is None else int(gold == prediction)])


def main(argv=None):
    args = parse_args(argv)
    stdout = sys.stdout
    # with --outputs_path -, standard output carries the predictions and nothing else
    with contextlib.redirect_stdout(sys.stderr if args.outputs_path == "-" else stdout):
        try:
            run_function(args, stdout)
        finally:
            if torch.distributed.is_initialized():
                torch.distributed.destroy_process_group()


def fill_in_device_defaults(args, device):
    """The defaults of the options that depend on the device the run will use."""
    if args.num_workers is None:
        # the original's 4 workers on CUDA; elsewhere the main process loads the data (it keeps
        # up with a CPU, and worker processes are a known source of hangs on macOS)
        args.num_workers = 4 if device == "cuda" else 0
    if args.micro_batch_size is None and device == "cpu":
        args.micro_batch_size = CPU_MICRO_BATCH


def run_function(args, stdout):
    check_args(args)
    if args.device != "auto" and not trainer.device_available(args.device):
        raise dataset.UserError(f"--device {args.device}: no {args.device.upper()} device is available")
    device = trainer.resolve_device(args.device)
    fill_in_device_defaults(args, device)
    if args.function == "evaluate" and int(os.environ.get("WORLD_SIZE", 1)) > 1:
        raise dataset.UserError("evaluate runs in one process: start it with python, not torchrun")
    args.rank, _ = trainer.init_distributed(device)
    utils.set_seed(args.seed)
    trainer.set_precision(args.precision)

    text = read_text(args.pretrain_corpus_path, "pretraining corpus")
    pretrain_dataset = dataset.CharCorruptionDataset(text, BLOCK_SIZE, name=args.pretrain_corpus_path)
    gpt = build_model(args.variant, args.bottleneck_dim, pretrain_dataset.vocab_size)
    if args.function == "evaluate":
        evaluate(args, gpt, pretrain_dataset, stdout)
    else:
        {"pretrain": pretrain, "finetune": finetune}[args.function](args, gpt, pretrain_dataset)


if __name__ == "__main__":
    try:
        main()
    except (dataset.UserError, trainer.CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except trainer.TrainingStopped as e:
        print(f"stopped: {e}", file=sys.stderr)
        sys.exit(1)
