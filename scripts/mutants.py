"""
Mutation testing, small and without dependencies: plant each realistic bug listed below in a copy
of the repository, run the tests named for it, and report whether they caught it.

    python scripts/mutants.py [--only NAME,NAME] [--timeout 600] [--list]

A mutant is caught when its tests fail (or run past the timeout), and survives when they pass.
Its old text must occur exactly once in its file: a mutant whose old text is gone is reported as
"stale", so that a change to the code cannot silently retire it. Before the mutants, each test
selection runs once on the unchanged code: one that fails there would make every mutant look
caught, so the script stops. The repository itself is never modified; the copy lives in a
temporary directory (src/, scripts/ and tests/ copied, everything else linked).
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import namedtuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

Mutant = namedtuple("Mutant", "name file old new tests description")

# test selections, as pytest arguments
DATASET = "tests/test_dataset.py"
TRAINER = "tests/test_trainer.py"
RECIPE = "tests/test_cli.py -k recipe"
EVALUATE = "tests/test_cli.py -k prompts or places"
SAVE = "tests/test_cli.py -k atomically"
RESUME = "tests/test_robustness.py -k interrupted_pretraining"
OUTPUTS = "tests/test_robustness.py -k overwrite or evaluating_into"
CHECKPOINT = "tests/test_robustness.py -k checkpoint_that_is_not_one or checkpoint_of_garbage"
MODEL = "tests/test_model.py"
SLICES = "tests/test_trainer.py -k micro_batches or processes"
PRECISION = "tests/test_trainer.py -k precision"
TORCHRUN = "tests/test_cli.py -k torchrun or micro_batch"
COMPILED = "tests/test_trainer.py -k compiled"
ANSWER_ON_NAME = "tests/test_analysis.py tests/test_cli.py -k name_share or attention_on_name"
RUN_ALL = "tests/test_run_all.py"
ANALYSIS = "tests/test_analysis.py"
DENORMALS = "tests/test_cli.py -k denormals"

# run.py's lines that read the corpus and build the model (their parallel operations start torch's threads)
RUN_BUILDS_MODEL = ('    text = read_text(args.pretrain_corpus_path, "pretraining corpus")\n'
                    "    pretrain_dataset = dataset.CharCorruptionDataset(text, BLOCK_SIZE, "
                    "name=args.pretrain_corpus_path)\n"
                    "    gpt = build_model(args.variant, args.bottleneck_dim, pretrain_dataset.vocab_size)\n")

MUTANTS = [
    # dataset.py
    Mutant("span-never-at-start", "src/dataset.py",
           "start = random.randint(0, len(document) - masked_length)",
           "start = random.randint(1, len(document) - masked_length)", DATASET,
           "the masked span never starts at the document's first character"),
    Mutant("span-never-at-end", "src/dataset.py",
           "start = random.randint(0, len(document) - masked_length)",
           "start = random.randint(0, len(document) - masked_length - 1)", DATASET,
           "the masked span never reaches the document's last character"),
    Mutant("truncation-3/4", "src/dataset.py", "int(self.block_size * 7 / 8)", "int(self.block_size * 3 / 4)",
           DATASET, "documents are truncated to at most 3/4 of block_size instead of 7/8"),
    Mutant("truncation-from-5", "src/dataset.py", "random.randint(4, int(", "random.randint(5, int(",
           DATASET, "the shortest truncation is 5 characters instead of 4"),
    Mutant("masked-length-quarter", "src/dataset.py", "random.randint(1, len(document) // 2 - 1)",
           "random.randint(1, len(document) // 4)", DATASET, "the masked length averages 1/8 instead of 1/4"),
    Mutant("content-before-suffix", "src/dataset.py",
           "prefix + MASK_CHAR + suffix + MASK_CHAR + masked_content",
           "prefix + MASK_CHAR + masked_content + MASK_CHAR + suffix", DATASET,
           "the masked content stays in place and the suffix moves to the end"),
    Mutant("y-not-shifted", "src/dataset.py", "return ids[:-1], ids[1:]", "return ids[:-1], ids[:-1]",
           DATASET, "span corruption's y is x, not x shifted by one"),
    Mutant("encode-unknown-silent", "src/dataset.py", "if (ids < 0).any():", "if False:", DATASET,
           "encode gives id -1 to a character outside the vocabulary instead of refusing it"),
    Mutant("answer-target-late", "src/dataset.py", "y = self.PAD_CHAR * (len(question) - 1)",
           "y = self.PAD_CHAR * len(question)", DATASET, "NameDataset's target starts one character late"),
    Mutant("no-closing-mask", "src/dataset.py", "x = question + self.MASK_CHAR + place + self.MASK_CHAR",
           "x = question + self.MASK_CHAR + place", DATASET, "NameDataset's answer has no closing MASK"),
    Mutant("mask-id-0", "src/dataset.py", "chars = [PAD_CHAR, MASK_CHAR] + chars",
           "chars = [MASK_CHAR, PAD_CHAR] + chars", DATASET, "MASK is id 0 and PAD id 1"),
    Mutant("keep-non-ascii", "src/dataset.py", 'decode("ascii", errors="ignore")', 'decode("utf-8", errors="ignore")',
           DATASET, "NameDataset keeps non-ASCII characters"),
    Mutant("empty-last-document", "src/dataset.py", 'return lines[:-1] if lines[-1] == "" else lines',
           "return lines", DATASET, "a final newline makes an empty last document"),
    # trainer.py
    Mutant("no-clipping", "src/trainer.py",
           "torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_norm_clip)",
           "torch.nn.utils.get_total_norm([p.grad for p in self.model.parameters()])",
           TRAINER, "no gradient clipping (the norm is still computed)"),
    Mutant("lr-before-step", "src/trainer.py",
           '        optimizer.step()\n'
           '        # as in the original, the new rate applies from the next step on\n'
           '        self.tokens += y.numel()\n'
           '        for param_group in optimizer.param_groups:\n'
           '            param_group["lr"] = self.learning_rate()\n',
           '        self.tokens += y.numel()\n'
           '        for param_group in optimizer.param_groups:\n'
           '            param_group["lr"] = self.learning_rate()\n'
           '        optimizer.step()\n',
           TRAINER, "the new learning rate is applied before the step instead of after"),
    Mutant("pads-not-counted", "src/trainer.py", "self.tokens += y.numel()", "self.tokens += int((y != 0).sum())",
           TRAINER, "padded positions are left out of the token count"),
    Mutant("decay-on-biases", "src/trainer.py", 'decay = [p for n, p in params.items() if "bias" not in n]',
           "decay = [p for n, p in params.items() if p.dim() >= 2]", TRAINER,
           "weight decay only on matrices (nanoGPT's rule), so LayerNorm weights go untrained"),
    Mutant("adam-betas", "src/trainer.py", "betas = (0.9, 0.95)", "betas = (0.9, 0.999)", TRAINER,
           "AdamW's default betas instead of the original's"),
    Mutant("lr-floor-0", "src/trainer.py", "max(0.1, 0.5 *", "max(0.0, 0.5 *", TRAINER,
           "the cosine decays to 0 instead of 10%"),
    Mutant("no-warmup", "src/trainer.py", "lr_mult = self.tokens / max(1, config.warmup_tokens)", "lr_mult = 1.0",
           TRAINER, "no linear warmup"),
    Mutant("cosine-stops", "src/trainer.py",
           "progress = (self.tokens - config.warmup_tokens) / max(1, config.final_tokens - config.warmup_tokens)",
           "progress = min(1.0, (self.tokens - config.warmup_tokens) / max(1, config.final_tokens - "
           "config.warmup_tokens))", TRAINER, "the cosine stops at final_tokens, unlike the original's"),
    Mutant("shuffle-by-default", "src/trainer.py", "shuffle = False ", "shuffle = True ", TRAINER,
           "the trainer reshuffles every epoch by default, unlike the original"),
    Mutant("resume-mid-epoch-order", "src/trainer.py", "elif index == 0 or step == self.start_step:",
           "elif index == 0:", TRAINER, "a run resumed mid-epoch has no batch order"),
    Mutant("resume-without-python-random", "src/trainer.py", '    random.setstate(state["python"])\n', "",
           RESUME, "a resume does not restore Python's random state"),
    Mutant("resume-without-torch-random", "src/trainer.py", '    torch.set_rng_state(state["torch"])\n', "",
           RESUME, "a resume does not restore torch's random state"),
    Mutant("resume-without-optimizer", "src/trainer.py", '        optimizer.load_state_dict(state["optimizer"])\n',
           "", RESUME, "a resume starts Adam's moments afresh"),
    Mutant("resume-without-tokens", "src/trainer.py",
           'self.tokens, self.shuffle_seed = state["tokens"], state["shuffle_seed"]',
           'self.shuffle_seed = state["shuffle_seed"]', RESUME, "a resume restarts the learning-rate schedule"),
    Mutant("compiled-copy", "src/trainer.py", "torch.compile(self.training_module, dynamic=False,",
           'torch.compile(__import__("copy").deepcopy(self.training_module), dynamic=False,', COMPILED,
           "--compile trains a copy of the model, so the saved params never move"),
    Mutant("checkpoint-unpickles", "src/trainer.py", "map_location=self.device, weights_only=True)",
           "map_location=self.device, weights_only=False)", CHECKPOINT,
           "checkpoints load with pickle, so a crafted one runs code"),
    Mutant("denormals-kept", "src/trainer.py", "    torch.set_flush_denormal(True)\n", "", DENORMALS,
           "training on a CPU keeps denormal numbers, which slowed the perceiver twofold"),
    # run.py
    Mutant("precision-after-model", "src/run.py", "    trainer.set_precision(args.precision)\n\n" + RUN_BUILDS_MODEL,
           "\n" + RUN_BUILDS_MODEL + "    trainer.set_precision(args.precision)\n", DENORMALS,
           "the precision is set after the model is built, when torch's CPU threads already run"),
    Mutant("prompt-with-answer", "src/run.py", 'question = line.split("\\t")[0]', "question = line",
           EVALUATE, "the evaluation prompt contains the gold answer"),
    Mutant("prompt-without-mask", "src/run.py", "if c in pretrain_dataset.stoi) + dataset.MASK_CHAR",
           "if c in pretrain_dataset.stoi)", EVALUATE, "the evaluation prompt lacks the MASK"),
    Mutant("answer-not-cut", "src/run.py", ".split(dataset.MASK_CHAR)[0]", '.replace(dataset.MASK_CHAR, "")',
           EVALUATE, "the prediction runs on past the model's closing MASK"),
    Mutant("finetune-from-params-75", "src/run.py", '"finetune from params": {"max_epochs": 10,',
           '"finetune from params": {"max_epochs": 75,', RECIPE, "finetuning from params runs 75 epochs, not 10"),
    Mutant("finetune-from-scratch-10", "src/run.py", '"finetune from scratch": {"max_epochs": 75,',
           '"finetune from scratch": {"max_epochs": 10,', RECIPE, "finetuning from scratch runs 10 epochs, not 75"),
    Mutant("recipes-swapped", "src/run.py",
           'train(args, gpt, finetune_dataset, pretrain_dataset, "finetune from params")',
           'train(args, gpt, finetune_dataset, pretrain_dataset, "finetune from scratch")', RECIPE,
           "finetuning from params follows the from-scratch recipe"),
    Mutant("pretrain-batch-64", "src/run.py", '"pretrain": {"max_epochs": 650, "batch_size": 128,',
           '"pretrain": {"max_epochs": 650, "batch_size": 64,', RECIPE, "pretraining at batch 64"),
    Mutant("pretrain-lr-ignored", "src/run.py", '"batch_size": 128, "learning_rate": "pretrain_lr"',
           '"batch_size": 128, "learning_rate": "finetune_lr"', RECIPE, "pretraining ignores --pretrain_lr"),
    Mutant("lr-option-ignored", "src/run.py", 'learning_rate=getattr(args, RECIPE[recipe]["learning_rate"]),',
           "learning_rate=args.pretrain_lr,", RECIPE, "finetuning ignores --finetune_lr"),
    Mutant("two-layers", "src/run.py", '"n_layer": 4,', '"n_layer": 2,', RECIPE, "a model of 2 layers, not 4"),
    Mutant("final-tokens-of-finetuning", "src/run.py", "        args, pretrain_dataset, recipe,\n",
           "        args, train_dataset, recipe,\n", RECIPE,
           "final_tokens counted on the finetuning set instead of the pretraining corpus"),
    Mutant("warmup-halved", "src/run.py", "warmup_tokens=512 * 20", "warmup_tokens=512 * 10", RECIPE,
           "warmup over 512*10 tokens instead of 512*20"),
    Mutant("shuffle-always", "src/run.py", "shuffle=args.shuffle", "shuffle=True", RECIPE,
           "run.py reshuffles every epoch without --shuffle"),
    Mutant("params-saved-in-place", "src/run.py",
           'utils.write_atomically(path, lambda f: torch.save(gpt.state_dict(), f), mode="wb")',
           "torch.save(gpt.state_dict(), path)", SAVE, "run.py writes the params file in place, not atomically"),
    Mutant("outputs-compared-as-text", "src/run.py", 'if name != f"--{option}" and same_file(path, other):',
           'if name != f"--{option}" and path == other:', OUTPUTS,
           "an output is compared with the inputs as text, so ./x or a link to x passes"),
    Mutant("no-hard-link-check", "src/run.py", "os.path.exists(a) and os.path.exists(b) and os.path.samefile(a, b))",
           "False)", OUTPUTS, "an output that is a hard link to an input passes"),
    # slices of a batch, several processes, precision
    Mutant("slices-weigh-alike", "src/trainer.py", "return [(xs, ys, int(cs.sum()) / total)",
           "return [(xs, ys, len(ys) / len(y))", SLICES,
           "each slice's loss weighs by its examples, not by its share of the batch's targets"),
    Mutant("processes-not-summed", "src/trainer.py", "(slice_loss * (weight * self.world_size)).backward()",
           "(slice_loss * weight).backward()", SLICES,
           "DDP's average over processes is not undone: the gradient is 1/N of the batch's"),
    Mutant("no-ddp", "src/trainer.py", "self.ddp = DistributedDataParallel(model) if self.world_size > 1 else None",
           "self.ddp = None", SLICES, "torchrun's processes never average their gradients"),
    Mutant("every-process-whole-batch", "src/trainer.py",
           "share = slice(*(len(y) * r // self.world_size for r in (self.rank, self.rank + 1)))",
           "share = slice(None)", SLICES, "every process trains on the whole batch instead of its share"),
    Mutant("bf16-scores", "src/attention.py", "if torch.is_autocast_enabled(q.device.type):", "if False:",
           PRECISION, "under bfloat16 autocast the attention scores are made in bfloat16"),
    Mutant("bf16-ignored", "src/trainer.py", 'enabled=self.config.precision == "bf16"', "enabled=False",
           PRECISION, "--precision bf16 trains in float32"),
    Mutant("cpu-whole-batch", "src/run.py", "args.micro_batch_size = CPU_MICRO_BATCH", "pass", TORCHRUN,
           "the CPU trains finetuning's 256 examples at once (5.4 GiB)"),
    Mutant("every-process-logs", "src/run.py", "writer=tensorboard_writer(args) if args.rank == 0 else None",
           "writer=tensorboard_writer(args)", TORCHRUN, "every torchrun process writes TensorBoard logs"),
    # attention.py
    Mutant("no-causal-mask", "src/attention.py",
           "return None if cache is not None else self.mask[0, 0, :Tq, :Tk].bool()", "return None", MODEL,
           "attention sees every position, the future included"),
    Mutant("scale-by-d", "src/attention.py", "scale = 1.0 / math.sqrt(q.size(-1)) if scale is None else scale\n    att",
           "scale = 1.0 / q.size(-1) if scale is None else scale\n    att", MODEL,
           "the explicit softmax divides the scores by d/h instead of sqrt(d/h)"),
    Mutant("fused-not-causal", "src/attention.py", "is_causal=mask is not None", "is_causal=False", MODEL,
           "torch's fused kernel is called without the causal mask"),
    Mutant("cache-forgets", "src/attention.py",
           "self.k = None if k is None else torch.cat([self.k, k], dim=2)\n"
           "            self.v = torch.cat([self.v, v], dim=2)",
           "self.k, self.v = k, v", MODEL, "the key/value cache keeps only the newest position"),
    Mutant("training-path-drops-bias", "src/attention.py", "att += additive_mask(mask, bias)",
           "att += additive_mask(mask, None)", MODEL, "CPU training leaves out the synthesizer's b2"),
    Mutant("dropout-doubled", "src/attention.py", ">= round(self.p * 2**31)", ">= round(self.p * 2**32)", MODEL,
           "the CPU dropout drops twice the probability"),
    Mutant("dropout-unscaled", "src/attention.py", "torch.where(keep, 1 / (1 - self.p), 0.0)",
           "torch.where(keep, 1.0, 0.0)", MODEL, "the CPU dropout does not scale the kept values"),
    Mutant("no-output-projection", "src/attention.py", "return self.resid_drop(self.proj(y))",
           "return self.resid_drop(y)", MODEL, "the heads are not projected with A"),
    Mutant("synthesizer-no-relu", "src/attention.py", "F.relu(self.w1(x))", "self.w1(x)", MODEL,
           "the synthesizer's hidden layer has no ReLU"),
    Mutant("synthesizer-w2-wide-init", "src/attention.py", "nn.init.uniform_(self.w2, -0.001, 0.001)",
           "nn.init.uniform_(self.w2, -0.1, 0.1)", MODEL, "w2 initialised on +-0.1 instead of +-0.001"),
    Mutant("synthesizer-b2-decoding", "src/attention.py", "bias=self.b2[:Tk]", "bias=self.b2[:T]", MODEL,
           "while decoding, the synthesizer adds b2's first entry to every position"),
    Mutant("synthesizer-last-columns", "src/attention.py", "self.w2[:, :Tk]", "self.w2[:, -Tk:]", MODEL,
           "a short sequence uses w2's last columns instead of its first"),
    Mutant("synthesizer-compares-contents", "src/attention.py",
           "positions = self.w2[:, :Tk].t().expand(B, self.n_head, Tk, C // self.n_head)",
           "positions = self.w2[:, :Tk].t().expand(B, self.n_head, Tk, C // self.n_head) + 0.1 * hidden", MODEL,
           "the synthesizer's columns take in each position's content, so its scores compare positions' contents"),
    Mutant("rope-decodes-at-0", "src/attention.py", "rope_cache = self.rope_cache[start:start + q.size(2)]",
           "rope_cache = self.rope_cache[:q.size(2)]", MODEL, "a cached rope position is rotated by 0, not by t"),
    Mutant("rope-halves", "src/attention.py", "a, b = x[..., 0::2], x[..., 1::2]",
           "a, b = x[..., :x.size(-1) // 2], x[..., x.size(-1) // 2:]", MODEL,
           "rope pairs feature j with j + d/2 instead of its neighbour"),
    Mutant("rope-theta", "src/attention.py", "torch.arange(0, dim, 2, dtype=torch.float64) / dim",
           "torch.arange(0, dim // 2, dtype=torch.float64) / dim", MODEL, "theta_j = 10000^(-j/d)"),
    Mutant("rope-keys-unrotated", "src/attention.py",
           "return apply_rotary_emb(q, rope_cache), apply_rotary_emb(k, rope_cache)",
           "return apply_rotary_emb(q, rope_cache), k", MODEL, "rope rotates the queries only"),
    # model.py
    Mutant("rope-keeps-pos-emb", "src/model.py", "if variant.position_embedding else None", "", MODEL,
           "a rope model still adds a position embedding"),
    Mutant("pos-emb-decoding", "src/model.py", "self.pos_emb[:, start:start + t, :]", "self.pos_emb[:, :t, :]",
           MODEL, "while decoding, every position gets position 0's embedding"),
    Mutant("perceiver-zero-basis", "src/model.py", "nn.init.xavier_uniform_(self.C)", "nn.init.zeros_(self.C)",
           MODEL, "the perceiver's basis starts at zero"),
    Mutant("perceiver-decodes-next-basis", "src/model.py", "self.C[:, len(cache):len(cache) + 1]",
           "self.C[:, len(cache) + 1:len(cache) + 2]", MODEL, "perceiver decoding uses the next basis vector"),
    Mutant("up-block-no-residual", "src/model.py", "x = x_input + self.attn(y, x_input, cache)",
           "x = self.attn(y, x_input, cache)", MODEL, "the up-projection block drops its residual"),
    Mutant("post-layer-norm", "src/model.py", "x = x + self.attn(self.ln1(x), cache)",
           "x = self.ln1(x + self.attn(x, cache))", MODEL, "blocks normalise after the attention, not before"),
    Mutant("relu-mlp", "src/model.py", "nn.GELU(),", "nn.ReLU(),", MODEL, "the MLP uses ReLU instead of GELU"),
    Mutant("head-bias", "src/model.py", "nn.Linear(config.n_embd, config.vocab_size, bias=False)",
           "nn.Linear(config.n_embd, config.vocab_size)", MODEL, "the output head has a bias"),
    Mutant("init-std", "src/model.py", "module.weight.data.normal_(mean=0.0, std=0.02)",
           "module.weight.data.normal_(mean=0.0, std=0.2)", MODEL, "weights initialised with std 0.2"),
    Mutant("loss-counts-pad", "src/model.py",
           "targets.view(-1),\n                                   ignore_index=self.ignore_index)",
           "targets.view(-1))", MODEL, "the loss also trains on PAD targets"),
    Mutant("two-variants-at-once", "src/model.py", "if len(chosen) > 1:", "if len(chosen) > 2:", MODEL,
           "GPTConfig builds a hybrid of two variants"),
    Mutant("synthesizer-full-context", "src/model.py", 'signature="blocks.0.attn.w1.weight", context_cut=1',
           'signature="blocks.0.attn.w1.weight"', "tests/test_robustness.py -k too_long",
           "the synthesizer claims 128 positions, and a 96-character question crashes it"),
    # scripts/run_all.sh
    Mutant("run-all-no-resume", "scripts/run_all.sh", "resume=(--resume)", "resume=()", RUN_ALL,
           "run_all.sh starts an interrupted stage over instead of resuming its checkpoint"),
    Mutant("run-all-redoes-stages", "scripts/run_all.sh", '[ -f "logs/$name.done" ] && return 0', ":", RUN_ALL,
           "run_all.sh runs again the stages that finished"),
    Mutant("run-all-one-seed", "scripts/run_all.sh", 'flags=(--seed "$seed")', "flags=()", RUN_ALL,
           "run_all.sh trains every seed of a run with seed 0"),
    Mutant("run-all-stops-at-failure", "scripts/run_all.sh", 'one_run "$tag" || failed=1', 'one_run "$tag" || exit 1',
           RUN_ALL, "one failed run stops run_all.sh, and the runs after it never start"),
    Mutant("run-all-goes-on-after-ctrl-c", "scripts/run_all.sh", '  [ -z "$interrupted" ] || { failed=1; break; }\n',
           "", RUN_ALL, "after Ctrl-C, run_all.sh starts the next run"),
    Mutant("run-all-jobs-lose-failures", "scripts/run_all.sh",
           'while [ "$(jobs -rp | wc -l)" -gt 0 ]; do wait -n || failed=1; done', "wait", RUN_ALL,
           "with JOBS > 1, a run that fails at the end goes unreported: run_all.sh exits 0"),
    # scripts/analyze_predictions.py
    Mutant("analysis-ignores-bf16", "scripts/analyze_predictions.py", 'if match and match["run"] in RUNS + BF16_RUNS:',
           'if match and match["run"] in RUNS:', ANALYSIS, "the analysis leaves out the bf16 runs' predictions"),
    Mutant("analysis-bf16-not-pretrained", "scripts/analyze_predictions.py",
           'if run.split(".")[1] == "pretrain"]', 'if run.endswith(".pretrain")]', ANALYSIS,
           "the analysis counts the bf16 runs among the runs without pretraining"),
    Mutant("loss-table-window-too-wide", "scripts/loss_table.py", "if step - window < s <= step]",
           "if step - window <= s <= step]", "tests/test_analysis.py -k loss_table",
           "loss_table.py averages one logged step more than its window"),
    Mutant("loss-table-accepts-no-losses", "scripts/loss_table.py", "        if not steps:\n",
           "        if False:\n", "tests/test_analysis.py -k loss_table",
           "loss_table.py prints a blank row for a folder without losses instead of refusing it"),
    Mutant("name-share-skips-mask-row", "scripts/attention_on_name.py", "rows = weights[:, prompt_length - 1:, :]",
           "rows = weights[:, prompt_length:, :]", ANSWER_ON_NAME,
           "attention_on_name.py leaves out the MASK's row, which writes the answer's first character"),
    Mutant("name-share-one-late", "scripts/attention_on_name.py", "rows[:, :, start:start + name_length]",
           "rows[:, :, start + 1:start + name_length + 1]", ANSWER_ON_NAME,
           "attention_on_name.py counts the name's keys one character late"),
    Mutant("even-share-one-key-short", "scripts/attention_on_name.py", "(name_length / (positions + 1))",
           "(name_length / positions)", ANSWER_ON_NAME,
           "attention_on_name.py's even share counts one key too few in each row's causal prefix"),
    Mutant("name-share-right-wrong-swapped", "scripts/attention_on_name.py", "shares[answer == place]",
           "shares[answer != place]", ANSWER_ON_NAME, "attention_on_name.py files right answers under wrong"),
    # utils.py
    Mutant("write-in-place", "src/utils.py", 'tmp = f"{path}.tmp{os.getpid()}"', "tmp = path", SAVE,
           "write_atomically writes the file itself"),
    Mutant("places-by-prefix", "src/utils.py", "lambda x: x[0] == x[1]", "lambda x: x[1].startswith(x[0])",
           EVALUATE, "evaluate_places counts a prediction that starts the gold place as correct"),
    Mutant("gold-place-rest-of-line", "src/utils.py", "return fields[0], (fields[1] if len(fields) > 1 else None)",
           'return fields[0], ("\\t".join(fields[1:]) if len(fields) > 1 else None)',
           "tests/test_cli.py -k predictions_csv",
           "the predictions CSV takes all of a line after its first tab as the gold place"),
    Mutant("seed-skips-random", "src/utils.py", "    random.seed(seed)\n", "", RESUME,
           "set_seed leaves Python's random generator unseeded"),
    Mutant("decode-one-late", "src/utils.py", "generating = (position + 1 >= lengths)",
           "generating = (position >= lengths)", "tests/test_model.py -k greedy",
           "batched decoding overwrites the last prompt character"),
]


def make_copy():
    """A temporary repository: src/, scripts/ and tests/ copied, everything else linked."""
    copy = tempfile.mkdtemp(prefix="mutants-")
    for name in os.listdir(ROOT):
        if name in ("src", "scripts", "tests"):
            shutil.copytree(os.path.join(ROOT, name), os.path.join(copy, name),
                            ignore=shutil.ignore_patterns("__pycache__"))
        elif name != ".git":
            os.symlink(os.path.join(ROOT, name), os.path.join(copy, name))
    return copy


def run_tests(copy, tests, timeout):
    """'passed', 'failed', 'timeout', or 'error' (pytest could not run the selection)."""
    args = tests.split(" -k ", 1)  # test files, then the -k expression
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *args[0].split()]
    if len(args) == 2:
        command += ["-k", args[1]]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        result = subprocess.run(command, cwd=copy, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return "timeout"
    return {0: "passed", 1: "failed"}.get(result.returncode, "error")


def main():
    argp = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    argp.add_argument("--only", help="comma-separated mutant names")
    argp.add_argument("--timeout", type=int, default=600, help="seconds for one mutant's tests")
    argp.add_argument("--list", action="store_true", help="list the mutants and exit")
    args = argp.parse_args()
    mutants = [m for m in MUTANTS if not args.only or m.name in args.only.split(",")]
    if args.list:
        for m in mutants:
            print(f"{m.name:30} {m.file:16} {m.description}")
        return
    copy = make_copy()
    try:
        for tests in dict.fromkeys(m.tests for m in mutants):
            outcome = run_tests(copy, tests, args.timeout)
            if outcome != "passed":
                sys.exit(f"error: on the unchanged code, `pytest {tests}` {outcome}: fix that first")
        results = []
        for m in mutants:
            path = os.path.join(copy, m.file)
            with open(path, encoding="utf-8") as f:
                original = f.read()
            start = time.perf_counter()
            if original.count(m.old) != 1:
                outcome = "stale"
            else:
                try:
                    with open(path, "w", encoding="utf-8") as f:
                        f.write(original.replace(m.old, m.new))
                    outcome = {"failed": "caught", "timeout": "caught (timeout)", "passed": "survived",
                               "error": "error"}[run_tests(copy, m.tests, args.timeout)]
                finally:
                    with open(path, "w", encoding="utf-8") as f:
                        f.write(original)
            results.append(outcome)
            print(f"{outcome:16} {m.name:30} {time.perf_counter() - start:5.0f} s  {m.description}", flush=True)
    finally:
        shutil.rmtree(copy)
    caught = sum(r.startswith("caught") for r in results)
    print(f"\ncaught {caught} of {len(results)} mutants ({caught / len(results):.0%}); "
          f"survived {results.count('survived')}, stale {results.count('stale')}, error {results.count('error')}")


if __name__ == "__main__":
    main()
