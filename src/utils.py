"""Seeding, sampling and decoding from a trained GPT, and scoring birth-place predictions."""
import os
import random

import numpy as np
import torch
from torch.nn import functional as F


def set_seed(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def top_k_logits(logits, k):
    v, ix = torch.topk(logits, k)
    out = logits.clone()
    out[out < v[:, [-1]]] = -float("Inf")
    return out


@torch.no_grad()
def sample(model, x, steps, temperature=1.0, sample=False, top_k=None):
    """
    take a conditioning sequence of indices in x (of shape (b,t)) and predict the next token in
    the sequence, feeding the predictions back into the model each time. Clearly the sampling
    has quadratic complexity unlike an RNN that is only linear, and has a finite context window
    of block_size, unlike an RNN that has an infinite context window.
    """
    block_size = model.get_block_size()
    model.eval()
    for k in range(steps):
        x_cond = x if x.size(1) <= block_size else x[:, -block_size:]  # crop context if needed
        logits, _ = model(x_cond)
        # pluck the logits at the final step and scale by temperature
        logits = logits[:, -1, :] / temperature
        # optionally crop probabilities to only the top k options
        if top_k is not None:
            logits = top_k_logits(logits, top_k)
        # apply softmax to convert to probabilities
        probs = F.softmax(logits, dim=-1)
        # sample from the distribution or take the most likely
        if sample:
            ix = torch.multinomial(probs, num_samples=1)
        else:
            _, ix = torch.topk(probs, k=1, dim=-1)
        # append to the sequence and continue
        x = torch.cat((x, ix), dim=1)
    return x


@torch.no_grad()
def greedy_decode(model, prompts, steps, stop_id):
    """
    Greedy completions of many prompts at once: for each 1-D LongTensor in `prompts`, the `steps`
    tokens that sample(model, prompt[None], steps) would append, cut after the first stop_id.
    Every row advances one position per forward call, reading its prompt until it runs out and
    then its own predictions, so all rows share the position and one key/value cache serves them
    all. The loop ends as soon as every row has produced stop_id.
    """
    model.eval()
    device = next(model.parameters()).device
    lengths = torch.tensor([len(p) for p in prompts], device=device)
    longest = int(lengths.max())
    if longest + steps - 1 > model.get_block_size():
        raise ValueError(f"a prompt of {longest} tokens leaves no room for {steps} decoding "
                         f"steps in block_size={model.get_block_size()}")
    # the prompts, then room for what each row generates after its own prompt
    tokens = torch.zeros(len(prompts), longest + steps, dtype=torch.long, device=device)
    for row, prompt in enumerate(prompts):
        tokens[row, :len(prompt)] = prompt
    finished = torch.zeros(len(prompts), dtype=torch.bool, device=device)
    state = model.new_decode_state()
    for position in range(longest + steps - 1):
        logits, _ = model(tokens[:, position:position + 1], state=state)
        prediction = logits[:, -1].argmax(dim=-1)
        # a row generates from its last prompt position on, for `steps` positions
        generating = (position + 1 >= lengths) & (position + 1 < lengths + steps)
        tokens[:, position + 1] = torch.where(generating, prediction, tokens[:, position + 1])
        finished |= generating & (prediction == stop_id)
        if bool(finished.all()):
            break
    completions = []
    for row, length in enumerate(lengths.tolist()):
        generated = tokens[row, length:length + steps].tolist()
        completions.append(generated[:generated.index(stop_id) + 1] if stop_id in generated else generated)
    return completions


def evaluate_places(filepath, predicted_places):
    """
    Computes percent of correctly predicted birth places.

    Arguments:
        filepath: path to a file with our name, birth place data.
        predicted_places: a list of strings representing the predicted birth place of each
            person.

    Returns: (total, correct), floats
    """
    with open(filepath, encoding="utf-8") as fin:
        return count_correct_places(list(fin), predicted_places)


def count_correct_places(lines, predicted_places):
    """evaluate_places on the lines of the file (with or without their newlines), already read."""
    lines = [x.strip().split("\t") for x in lines]
    if len(lines[0]) == 1:
        print("No gold birth places provided; returning (0,0)")
        return (0, 0)
    true_places = [x[1] for x in lines]
    total = len(true_places)
    assert total == len(predicted_places)
    correct = len(list(filter(lambda x: x[0] == x[1], zip(true_places, predicted_places))))
    return (float(total), float(correct))


def split_question_line(line):
    """(question, gold place) of a line of a question<TAB>place file, the place read as
    evaluate_places reads it (the second tab-separated field); None for a line without a tab."""
    fields = line.strip().split("\t")
    return fields[0], (fields[1] if len(fields) > 1 else None)


def write_atomically(path, write, mode="w"):
    """Call write(file) on a temporary file beside path, then rename it over path, so that an
    interrupted run leaves either the old file or the complete new one."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, mode, **({"encoding": "utf-8"} if "b" not in mode else {})) as f:
            write(f)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
