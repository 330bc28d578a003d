"""The vocabulary and the two datasets, rule by rule (the handout's rules, README.md "Map of the code")."""
import os
import random
import subprocess
import sys

import pytest
import torch

import dataset
from conftest import ROOT, data_path
from dataset import MASK_CHAR, PAD_CHAR

BLOCK_SIZE = 128


def decode(ds, ids):
    return "".join(ds.itos[int(i)] for i in ids)


def test_vocabulary_is_pad_mask_then_sorted_corpus_characters():
    ds = dataset.CharCorruptionDataset("hello world\nabcd efg\n", BLOCK_SIZE)
    expected = [PAD_CHAR, MASK_CHAR] + sorted(set("hello world\nabcd efg\n"))
    assert [ds.itos[i] for i in range(ds.vocab_size)] == expected
    assert all(ds.stoi[c] == i for i, c in enumerate(expected))
    assert ds.stoi[PAD_CHAR] == 0 and ds.stoi[MASK_CHAR] == 1


def test_encode_gives_each_characters_id_and_refuses_a_character_outside_the_vocabulary():
    ds = dataset.CharCorruptionDataset("hello w\u00f6rld \U0001F600\nabcd\n", BLOCK_SIZE)
    text = MASK_CHAR + "w\u00f6rld \U0001F600 abcd" + PAD_CHAR  # one character beyond 16 bits
    assert ds.encode(text).dtype == torch.long
    assert ds.encode(text).tolist() == [ds.stoi[c] for c in text]
    for outside in ("z", "\U0001F601"):  # neither is in the corpus; the second is beyond 16 bits too
        with pytest.raises(KeyError):
            ds.encode("hello " + outside)


def test_wiki_vocabulary_has_256_symbols_and_2937_documents():
    ds = dataset.CharCorruptionDataset(open(data_path("wiki.txt"), encoding="utf-8").read(), BLOCK_SIZE)
    assert ds.vocab_size == 256
    assert len(ds) == 2937


def test_name_dataset_example_byte_for_byte():
    pretrain = dataset.CharCorruptionDataset("Where was Ann born? Paris\n", 16)
    names = dataset.NameDataset(pretrain, "Ann born?\tParis\n")
    assert len(names) == 1
    x, y = names[0]
    # question = "Ann born?" (9 characters), x = question MASK place MASK PAD..., cut to block_size - 1
    assert decode(names, x) == "Ann born?" + MASK_CHAR + "Paris"
    assert decode(names, y) == PAD_CHAR * 8 + MASK_CHAR + "Paris" + MASK_CHAR
    assert len(x) == len(y) == 15


def test_name_dataset_pads_to_block_size_and_keeps_only_ascii():
    pretrain = dataset.CharCorruptionDataset(open(data_path("wiki.txt"), encoding="utf-8").read(), BLOCK_SIZE)
    names = dataset.NameDataset(pretrain, "Where was Zo\u00eb Ng born?\tZ\u00fcrich\nWhere was B born?\tRome\n")
    assert len(names) == 2
    x, y = names[0]
    assert len(x) == len(y) == BLOCK_SIZE - 1
    question = "Where was Zo Ng born?"
    full = question + MASK_CHAR + "Zrich" + MASK_CHAR
    assert decode(names, x) == (full + PAD_CHAR * BLOCK_SIZE)[:BLOCK_SIZE - 1]
    assert decode(names, y) == PAD_CHAR * (len(question) - 1) + (full + PAD_CHAR * BLOCK_SIZE)[len(question):BLOCK_SIZE]


def corruption_samples(document, n, block_size=BLOCK_SIZE):
    """Sample n examples of one document and split each back into its parts."""
    # a second document of other characters keeps the vocabulary honest
    ds = dataset.CharCorruptionDataset(document + "\nzzzz zzzz\n", block_size)
    random.seed(1234)
    parts = []
    for _ in range(n):
        x, y = ds[0]
        assert len(x) == len(y) == block_size - 1
        assert x[1:].tolist() == y[:-1].tolist()  # y is x shifted by one
        masked_string = decode(ds, x) + decode(ds, y[-1:])
        body = masked_string.rstrip(PAD_CHAR)
        assert PAD_CHAR not in body  # PADs only at the end
        assert body.count(MASK_CHAR) == 2
        prefix, suffix, masked_content = body.split(MASK_CHAR)
        parts.append((prefix, masked_content, suffix))
    return parts


def test_corruption_reconstructs_a_truncation_of_the_document():
    document = "".join(random.Random(0).choice("abcdefgh ") for _ in range(300))
    for prefix, masked_content, suffix in corruption_samples(document, 2000):
        truncated = prefix + masked_content + suffix
        assert document.startswith(truncated)
        assert len(masked_content) >= 1


def test_corruption_can_mask_a_span_at_the_start_or_the_end_of_a_document():
    document = "".join(random.Random(1).choice("abcdefgh ") for _ in range(300))
    parts = corruption_samples(document, 2000)
    assert any(prefix == "" for prefix, _, _ in parts)
    assert any(suffix == "" for _, _, suffix in parts)
    # and anywhere between: every start position of a 10-character document's span occurs
    spans = {(len(prefix), len(masked)) for prefix, masked, _ in corruption_samples("abcdefghij", 2000)}
    assert {start for start, length in spans if length == 2} == set(range(0, 9))


def test_corruption_reaches_every_truncation_length_between_4_and_7_8_of_block_size():
    document = "x" * 200
    lengths = {sum(map(len, p)) for p in corruption_samples(document, 20000)}
    assert lengths == set(range(4, int(BLOCK_SIZE * 7 / 8) + 1))


def test_corruption_masked_length_averages_a_quarter_and_varies():
    document = "y" * 200
    parts = corruption_samples(document, 20000)
    ratios = [len(m) / (len(p) + len(m) + len(s)) for p, m, s in parts]
    assert abs(sum(ratios) / len(ratios) - 0.25) < 0.01
    long_ones = [len(m) for p, m, s in parts if len(p) + len(m) + len(s) == 112]
    assert min(long_ones) < 28 < max(long_ones)


def test_corruption_keeps_a_short_document_whole():
    document = "abcdefghij"
    lengths = [sum(map(len, p)) for p in corruption_samples(document, 500)]
    assert max(lengths) == len(document)
    assert lengths.count(len(document)) > 400  # most draws exceed 10 characters


@pytest.mark.parametrize("text, message", [
    ("ok document\nabc\n", "line 2: a document needs at least 4 characters"),
    ("fine text\nhas a \u25a1 in it\n", "line 2: contains the reserved character"),
    ("", "is empty"),
])
def test_bad_pretraining_corpus_is_rejected_with_its_line(text, message):
    with pytest.raises(dataset.UserError, match=message):
        dataset.CharCorruptionDataset(text, BLOCK_SIZE)


@pytest.mark.parametrize("text, message", [
    ("Where was A born?\tRome\nno tab here\n", "line 2: expected 'question<TAB>place'"),
    ("Where was A born?\t \n", "line 1: the place is empty"),
])
def test_bad_finetuning_corpus_is_rejected_with_its_line(text, message):
    pretrain = dataset.CharCorruptionDataset("Where was A born? Rome no tab here\n", BLOCK_SIZE)
    with pytest.raises(dataset.UserError, match=message):
        dataset.NameDataset(pretrain, text)


def test_examples_command_reads_the_working_directorys_data_first(tmp_path):
    script = os.path.join(ROOT, "src", "dataset.py")
    corpus = "Ada Lovelace. She was born in London.\nWhere was Alan Turing born? In Maida Vale.\n"
    (tmp_path / "wiki.txt").write_text(corpus, encoding="utf-8")
    (tmp_path / "birth_places_train.tsv").write_text("Where was Ada Lovelace born?\tLondon\n", encoding="utf-8")
    here = subprocess.run([sys.executable, script, "namedata"], cwd=tmp_path, capture_output=True, text=True)
    assert here.returncode == 0, here.stderr
    assert f"data has {len(corpus)} characters" in here.stdout
    assert "x: Where was Ada Lovelace born?\u2047London\u2047" in here.stdout
    # from a directory without data, the repository root's files
    data_path("wiki.txt")
    (tmp_path / "elsewhere").mkdir()
    root = subprocess.run([sys.executable, script, "charcorruption"], cwd=tmp_path / "elsewhere",
                          capture_output=True, text=True)
    assert root.returncode == 0, root.stderr
    assert "data has 418352 characters, 256 unique." in root.stdout
    assert len([line for line in root.stdout.splitlines() if line.startswith(("x: ", "y: "))]) == 8


def test_examples_command_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(dataset, "REPOSITORY_ROOT", str(tmp_path / "root"))
    with pytest.raises(dataset.UserError) as error:
        dataset.find_data_file("wiki.txt")
    assert str(error.value) == (f"wiki.txt: not found in {tmp_path} nor in {tmp_path / 'root'}; "
                                "`bash setup.sh` puts it at the repository root")
