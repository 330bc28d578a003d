"""
Datasets for the birth-place task.

CharCorruptionDataset turns wiki.txt into span-corruption examples for pretraining and owns the
vocabulary; NameDataset turns "question<TAB>place" lines into finetuning examples over the same
vocabulary. Run `python src/dataset.py charcorruption|namedata` to print a few decoded examples.
"""
import argparse
import os
import random
import sys

import numpy as np
import torch
from torch.utils.data import Dataset

PAD_CHAR = "\u25A1"   # □, id 0: fills every example up to block_size; the loss ignores it
MASK_CHAR = "\u2047"  # ⁇, id 1: marks where a span was cut out, and ends every answer
REPOSITORY_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class UserError(ValueError):
    """A mistake in what the user gave: a data file (the message names the file and the line), a
    params file, or the command's options. run.py prints it as one line and exits with code 2."""


def split_lines(text):
    """The lines of a text file, without the empty piece after a final newline."""
    lines = text.split("\n")
    return lines[:-1] if lines[-1] == "" else lines


class CharCorruptionDataset(Dataset):
    """
    Simplified T5 span corruption over the documents (lines) of the pretraining corpus. Each example
    is `prefix MASK suffix MASK masked_content PAD...`, shifted by one between x and y, so the model
    learns to write out the span that was cut from a document.
    """

    def __init__(self, data, block_size, name="pretraining corpus"):
        self.MASK_CHAR = MASK_CHAR
        self.PAD_CHAR = PAD_CHAR
        chars = sorted(set(data))
        for special in (PAD_CHAR, MASK_CHAR):
            if special in chars:
                lineno = data[:data.index(special)].count("\n") + 1
                raise UserError(f"{name}: line {lineno}: contains the reserved character "
                                f"{special!r} (U+{ord(special):04X})")
        # ids 0 and 1 are PAD and MASK; the corpus characters follow in sorted order
        chars = [PAD_CHAR, MASK_CHAR] + chars
        self.stoi = {ch: i for i, ch in enumerate(chars)}
        self.itos = {i: ch for i, ch in enumerate(chars)}
        # each character's id at its code point (-1: not in the vocabulary), so that encoding a
        # string is one array lookup instead of a dict lookup per character
        self.id_by_code_point = np.full(sys.maxunicode + 1, -1, dtype=np.int32)
        self.id_by_code_point[[ord(ch) for ch in chars]] = range(len(chars))
        self.block_size = block_size
        self.vocab_size = len(chars)
        self.data = split_lines(data)
        if not self.data:
            raise UserError(f"{name}: is empty")
        for lineno, document in enumerate(self.data, start=1):
            if len(document) < 4:
                raise UserError(f"{name}: line {lineno}: a document needs at least 4 characters, "
                                f"this one has {len(document)}")
        print(f"data has {len(data)} characters, {self.vocab_size} unique.")

    def __len__(self):
        return len(self.data)

    def encode(self, text):
        """The ids of text's characters, as a tensor; each character must be in the vocabulary."""
        ids = self.id_by_code_point[np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)]
        if (ids < 0).any():
            raise KeyError(f"characters not in the vocabulary: {text!r}")
        return torch.from_numpy(ids.astype(np.int64))

    def __getitem__(self, idx):
        # 1. truncate to a random length in [4, 7/8 block_size], leaving room for two MASKs
        truncated_length = random.randint(4, int(self.block_size * 7 / 8))
        document = self.data[idx][:truncated_length]
        # 2. cut out a span whose length averages 1/4 of the document: uniform on
        #    1 .. len/2 - 1, so 1/4 of an even length on average
        masked_length = random.randint(1, len(document) // 2 - 1)
        start = random.randint(0, len(document) - masked_length)
        prefix = document[:start]
        masked_content = document[start:start + masked_length]
        suffix = document[start + masked_length:]
        # 3. rearrange and pad
        masked_string = prefix + MASK_CHAR + suffix + MASK_CHAR + masked_content
        masked_string += PAD_CHAR * (self.block_size - len(masked_string))
        # 4. encode; 5. input and target are the same string shifted by one character
        ids = self.encode(masked_string)
        return ids[:-1], ids[1:]


class NameDataset(Dataset):
    """
    Finetuning examples `question MASK place MASK PAD...` over the pretraining vocabulary. Targets
    before the answer are PAD, so the loss (which ignores PAD) trains only on `place MASK`.
    """

    def __init__(self, pretraining_dataset, data, name="finetuning corpus"):
        self.MASK_CHAR = pretraining_dataset.MASK_CHAR
        self.PAD_CHAR = pretraining_dataset.PAD_CHAR
        self.itos = pretraining_dataset.itos
        self.stoi = pretraining_dataset.stoi
        self.block_size = pretraining_dataset.block_size
        # like the original, keep only ASCII characters
        lines = split_lines(data.encode("utf-8").decode("ascii", errors="ignore"))
        if not lines:
            raise UserError(f"{name}: is empty")
        self.data = []
        for lineno, line in enumerate(lines, start=1):
            if line.count("\t") != 1:
                raise UserError(f"{name}: line {lineno}: expected 'question<TAB>place', "
                                f"found {line.count(chr(9))} tabs")
            question, place = line.split("\t")
            if not place.strip():
                raise UserError(f"{name}: line {lineno}: the place is empty")
            unknown = sorted(set(line.replace("\t", "")) - self.stoi.keys())
            if unknown:
                raise UserError(f"{name}: line {lineno}: characters not in the pretraining "
                                f"vocabulary: {''.join(unknown)!r}")
            if len(question) + len(place) + 2 > self.block_size:
                raise UserError(f"{name}: line {lineno}: question and place exceed "
                                f"block_size={self.block_size} characters")
            self.data.append((question, place))

    def __len__(self):
        return len(self.data)

    def __getitem__(self, idx):
        question, place = self.data[idx]
        x = question + self.MASK_CHAR + place + self.MASK_CHAR
        x = x + self.PAD_CHAR * (self.block_size - len(x))
        y = self.PAD_CHAR * (len(question) - 1) + x[len(question):]
        x = x[:-1]
        x = torch.tensor([self.stoi[c] for c in x], dtype=torch.long)
        y = torch.tensor([self.stoi[c] for c in y], dtype=torch.long)
        return x, y


def find_data_file(name):
    """The path of a data file in the working directory, else at the repository root."""
    places = [os.getcwd(), REPOSITORY_ROOT]
    for place in places:
        if os.path.isfile(os.path.join(place, name)):
            return os.path.join(place, name)
    raise UserError(f"{name}: not found in {' nor in '.join(places)}; `bash setup.sh` puts it at the repository root")


def main():
    parser = argparse.ArgumentParser(description="Print a few decoded examples of a dataset.")
    parser.add_argument("dataset_type", choices=["namedata", "charcorruption"],
                        help="which dataset to sample from")
    args = parser.parse_args()
    block_size = 128
    corruption_dataset = CharCorruptionDataset(open(find_data_file("wiki.txt"), encoding="utf-8").read(), block_size)
    if args.dataset_type == "namedata":
        dataset = NameDataset(corruption_dataset,
                              open(find_data_file("birth_places_train.tsv"), encoding="utf-8").read())
    else:
        dataset = corruption_dataset
    for _, example in zip(range(4), dataset):
        x, y = example
        print("x:", "".join(dataset.itos[int(c)] for c in x))
        print("y:", "".join(dataset.itos[int(c)] for c in y))


if __name__ == "__main__":
    try:
        main()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
