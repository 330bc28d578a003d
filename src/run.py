"""
Pretrain, finetune and evaluate the birth-place model:

    python src/run.py pretrain|finetune|evaluate vanilla|perceiver|synthesizer wiki.txt [options]

Every function takes the pretraining corpus, because the vocabulary is built from it.
"""
import argparse
import sys

import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

import dataset
import model
import trainer
import utils

BLOCK_SIZE = 128

# what each variant changes in the model's configuration
VARIANTS = {
    "vanilla": lambda args: {},
    "synthesizer": lambda args: {"synthesizer": True},
    "perceiver": lambda args: {"perceiver": True, "bottleneck_dim": args.bottleneck_dim},
}


def parse_args(argv=None):
    argp = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    argp.add_argument("function", choices=["pretrain", "finetune", "evaluate"])
    argp.add_argument("variant", choices=list(VARIANTS))
    argp.add_argument("pretrain_corpus_path", help="the pretraining corpus (wiki.txt); gives the vocabulary")
    argp.add_argument("--reading_params_path", help="params to start from (finetune) or to evaluate")
    argp.add_argument("--writing_params_path", help="where pretrain/finetune save the params")
    argp.add_argument("--finetune_corpus_path", help="question<TAB>place lines to finetune on")
    argp.add_argument("--eval_corpus_path", help="questions (with or without places) to evaluate on")
    argp.add_argument("--outputs_path", help="where evaluate writes one prediction per line")
    argp.add_argument("--pretrain_lr", default=6e-3, type=float)
    argp.add_argument("--finetune_lr", default=6e-4, type=float)
    argp.add_argument("--bottleneck_dim", type=int, default=32, help="perceiver basis length m")
    argp.add_argument("--tb_expt_name", default="run", help="TensorBoard experiment name under expt/")
    # not in the original assignment
    argp.add_argument("--max_epochs", type=int, help="override the number of epochs (quick runs)")
    argp.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                      help="auto: CUDA when available, else CPU")
    argp.add_argument("--seed", type=int, default=0, help="seed for every random number generator")
    argp.add_argument("--num_workers", type=int,
                      help="data-loading processes (default: 4 on CUDA, as the original; 0 on CPU)")
    return argp.parse_args(argv)


def read_text(path, what):
    if path is None:
        raise dataset.DataError(f"{what} is required for this function")
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise dataset.DataError(f"{path}: cannot read the {what}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise dataset.DataError(f"{path}: the {what} is not UTF-8 text ({e.reason} at byte {e.start})") from None


def describe_params(state):
    """Which variant wrote a state_dict, from the parameters only it has."""
    if "down_block.C" in state:
        return f"perceiver with --bottleneck_dim {state['down_block.C'].size(1)}"
    if "blocks.0.attn.w1.weight" in state:
        return "synthesizer"
    return "vanilla"


def load_params(gpt, path, variant_name):
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise dataset.DataError(f"{path}: no such params file") from None
    except Exception as e:
        raise dataset.DataError(f"{path}: not a params file ({type(e).__name__})") from None
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise dataset.DataError(f"{path}: not a params file (no state_dict in it)")
    try:
        gpt.load_state_dict(state)
    except RuntimeError:
        raise dataset.DataError(f"{path}: these params are for the {describe_params(state)} model, "
                                f"not for {variant_name}") from None


def save_params(gpt, path):
    utils.write_atomically(path, lambda f: torch.save(gpt.state_dict(), f), mode="wb")


def tensorboard_writer(args):
    return SummaryWriter(log_dir="expt/%s/%s_%s_%d_pt_lr_%f_ft_lr_%f" % (
        args.function, args.tb_expt_name, args.variant, args.bottleneck_dim,
        args.pretrain_lr, args.finetune_lr))


def train(args, gpt, train_dataset, pretrain_dataset, max_epochs, batch_size, learning_rate):
    config = trainer.TrainerConfig(
        max_epochs=args.max_epochs or max_epochs, batch_size=batch_size, learning_rate=learning_rate,
        lr_decay=True, warmup_tokens=512 * 20, final_tokens=200 * len(pretrain_dataset) * BLOCK_SIZE,
        num_workers=args.num_workers, writer=tensorboard_writer(args), device=args.device)
    trainer.Trainer(gpt, train_dataset, None, config).train()
    config.writer.close()
    save_params(gpt, args.writing_params_path)


def pretrain(args, gpt, pretrain_dataset):
    train(args, gpt, pretrain_dataset, pretrain_dataset,
          max_epochs=650, batch_size=128, learning_rate=args.pretrain_lr)


def finetune(args, gpt, pretrain_dataset):
    finetune_dataset = dataset.NameDataset(
        pretrain_dataset, read_text(args.finetune_corpus_path, "finetuning corpus"),
        name=args.finetune_corpus_path)
    if args.reading_params_path is not None:
        load_params(gpt, args.reading_params_path, args.variant)
    # from scratch the model needs many more epochs than from pretrained params
    max_epochs = 10 if args.reading_params_path is not None else 75
    train(args, gpt, finetune_dataset, pretrain_dataset,
          max_epochs=max_epochs, batch_size=256, learning_rate=args.finetune_lr)


def evaluate(args, gpt, pretrain_dataset):
    if args.reading_params_path is None:
        raise dataset.DataError("--reading_params_path is required for evaluate")
    load_params(gpt, args.reading_params_path, args.variant)
    lines = dataset.split_lines(read_text(args.eval_corpus_path, "evaluation corpus"))
    if not lines:
        raise dataset.DataError(f"{args.eval_corpus_path}: the evaluation corpus is empty")
    gpt.to(trainer.resolve_device(args.device))
    prompts, unknown_lines = [], 0
    for line in lines:
        question = line.split("\t")[0]
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
        completions += utils.greedy_decode(gpt, prompts[start:start + batch], 32, stop_id=mask_id)
    # the prediction is what the model wrote between the question's MASK and its own
    predictions = ["".join(pretrain_dataset.itos[i] for i in c).split(dataset.MASK_CHAR)[0]
                   for c in completions]
    utils.write_atomically(args.outputs_path, lambda f: f.writelines(p + "\n" for p in predictions))
    total, correct = utils.evaluate_places(args.eval_corpus_path, predictions)
    if total > 0:
        print(f"Correct: {correct} out of {total}: {correct / total * 100}%")
    else:
        print(f"Predictions written to {args.outputs_path}; no targets provided")


def main(argv=None):
    args = parse_args(argv)
    if args.num_workers is None:
        args.num_workers = 4 if trainer.resolve_device(args.device).startswith("cuda") else 0
    if args.device == "cuda" and not torch.cuda.is_available():
        raise dataset.DataError("--device cuda: no CUDA device is available")
    utils.set_seed(args.seed)

    text = read_text(args.pretrain_corpus_path, "pretraining corpus")
    pretrain_dataset = dataset.CharCorruptionDataset(text, BLOCK_SIZE, name=args.pretrain_corpus_path)
    mconf = model.GPTConfig(pretrain_dataset.vocab_size, pretrain_dataset.block_size,
                            n_layer=4, n_head=8, n_embd=256, **VARIANTS[args.variant](args))
    gpt = model.GPT(mconf)
    {"pretrain": pretrain, "finetune": finetune, "evaluate": evaluate}[args.function](args, gpt, pretrain_dataset)


if __name__ == "__main__":
    try:
        main()
    except dataset.DataError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
