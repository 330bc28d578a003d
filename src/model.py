"""
GPT model (minGPT, Karpathy), with the attention variants of the assignment's editions, chosen
in the table VARIANTS:
- vanilla: every Block uses CausalSelfAttention;
- synthesizer (2021): every Block uses SynthesizerAttention;
- perceiver (2023): a DownProjectBlock cross-attends from a learned basis of bottleneck_dim vectors
  to the input, n_layer-2 Blocks run on that short sequence, and an UpProjectBlock cross-attends
  from the input back to it, which brings the length back to the input's;
- rope (2024): every Block uses RotarySelfAttention, and no position embedding is added to the
  token embeddings.
"""
import dataclasses
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn import functional as F

import attention


@dataclass(frozen=True)
class Variant:
    self_attention: type             # the attention of its Blocks (the perceiver's middle ones)
    signature: str = None            # a params key that only this variant's state_dict has
    position_embedding: bool = True  # False: the attention puts the positions in (RoPE)
    bottleneck: bool = False         # the perceiver's down- and up-projection blocks
    context_cut: int = 0             # positions short of block_size that it can read


VARIANTS = {
    "vanilla": Variant(attention.CausalSelfAttention),
    # w2 and b2 have one column per position, block_size - 1 of them
    "synthesizer": Variant(attention.SynthesizerAttention, signature="blocks.0.attn.w1.weight", context_cut=1),
    "perceiver": Variant(attention.CausalSelfAttention, signature="down_block.C", bottleneck=True),
    "rope": Variant(attention.RotarySelfAttention, signature="blocks.0.attn.rope_cache", position_embedding=False),
}


def variant_of(state_dict):
    """The variant whose state_dict this is, told by the keys that only it has."""
    return next((name for name, v in VARIANTS.items() if v.signature in state_dict), "vanilla")


@dataclass
class GPTConfig:
    """
    The model's size and variant, as minGPT's GPTConfig(vocab_size, block_size, **kwargs), except
    that a misspelt option, or two variants at once, raise instead of being ignored.
    """
    vocab_size: int
    block_size: int
    n_layer: int
    n_head: int
    n_embd: int
    embd_pdrop: float = 0.1
    resid_pdrop: float = 0.1
    attn_pdrop: float = 0.1
    # the variant: at most one of these is True; none is vanilla
    synthesizer: bool = False
    perceiver: bool = False
    rope: bool = False
    bottleneck_dim: int = None  # the perceiver's basis length m
    as_original: bool = False   # attention and dropout step by step as the original code, for reference

    def __post_init__(self):
        chosen = self.variants_chosen()
        if len(chosen) > 1:
            raise ValueError(f"GPTConfig: one variant at a time, not {' and '.join(chosen)}")
        if self.perceiver and not self.bottleneck_dim:
            raise ValueError("GPTConfig: the perceiver needs bottleneck_dim")
        if self.n_embd % self.n_head:
            raise ValueError(f"GPTConfig: n_embd={self.n_embd} is not a multiple of n_head={self.n_head}")

    def variants_chosen(self):
        return [name for name in VARIANTS if name != "vanilla" and getattr(self, name)]

    @property
    def variant(self):
        return (self.variants_chosen() or ["vanilla"])[0]


class Block(nn.Module):
    """An unassuming pre-LayerNorm Transformer block: x + attn(ln1(x)), then x + mlp(ln2(x))."""

    def __init__(self, config, attn=None):
        super().__init__()
        self.ln1 = nn.LayerNorm(config.n_embd)
        self.ln2 = nn.LayerNorm(config.n_embd)
        self.attn = VARIANTS[config.variant].self_attention(config) if attn is None else attn
        self.mlp = nn.Sequential(
            nn.Linear(config.n_embd, 4 * config.n_embd),
            nn.GELU(),
            nn.Linear(4 * config.n_embd, config.n_embd),
            attention.Dropout(config.resid_pdrop, config.as_original),
        )

    def forward(self, x, cache=None):
        x = x + self.attn(self.ln1(x), cache)
        return self.feed_forward(x)

    def feed_forward(self, x):
        return x + self.mlp(self.ln2(x))


class DownProjectBlock(Block):
    """
    Perceiver AR's first block: the basis C (1, m, d) makes the queries, the input X the keys and
    values, Y = C + CrossAttn(X, ln1(C)), so the output has the basis's length m. Basis vector j
    sees inputs 0..j.
    """

    def __init__(self, config):
        super().__init__(config, attention.CausalCrossAttention(config))
        self.C = nn.Parameter(torch.empty(1, config.bottleneck_dim, config.n_embd))
        nn.init.xavier_uniform_(self.C)

    def forward(self, x_input, cache=None):
        # decoding adds one input position, and with it the basis vector of the same index
        C = self.C if cache is None else self.C[:, len(cache):len(cache) + 1]
        C = C.expand(x_input.size(0), -1, -1)
        x = C + self.attn(x_input, self.ln1(C), cache)
        return self.feed_forward(x)


class UpProjectBlock(Block):
    """
    Perceiver AR's last block: the block input X makes the queries, the previous output Y the
    keys and values, X + CrossAttn(ln1(Y), X), which gives back the input's length. Input
    position t sees basis vectors 0..t.
    """

    def __init__(self, config):
        super().__init__(config, attention.CausalCrossAttention(config))

    def forward(self, y, x_input, cache=None):
        # y is None while decoding past the last basis vector: the cache holds all of them
        y = None if y is None else self.ln1(y)
        x = x_input + self.attn(y, x_input, cache)
        return self.feed_forward(x)


class DecodeState:
    """Per-layer key/value caches and the number of positions decoded so far."""

    def __init__(self, n_layer):
        self.caches = [attention.KVCache() for _ in range(n_layer)]
        self.position = 0


class GPT(nn.Module):
    """The full GPT language model, with a context size of block_size."""

    ignore_index = 0  # targets that count for no loss: the datasets' PAD character

    def __init__(self, config):
        super().__init__()
        variant = VARIANTS[config.variant]
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)
        self.pos_emb = (nn.Parameter(torch.zeros(1, config.block_size, config.n_embd))
                        if variant.position_embedding else None)
        self.drop = attention.Dropout(config.embd_pdrop, config.as_original)
        self.bottleneck = variant.bottleneck
        if variant.bottleneck:
            self.down_block = DownProjectBlock(config)
            # the middle blocks' causal masks span the m basis positions
            middle = dataclasses.replace(config, block_size=config.bottleneck_dim)
            self.blocks = nn.ModuleList(Block(middle) for _ in range(config.n_layer - 2))
            self.up_block = UpProjectBlock(config)
        else:
            self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.block_size = config.block_size - variant.context_cut
        self.bottleneck_dim = config.bottleneck_dim
        self.n_layer = config.n_layer
        self.apply(self._init_weights)
        print(f"number of parameters: {sum(p.numel() for p in self.parameters())}")

    def get_block_size(self):
        """The longest sequence the model reads: block_size, one less for the synthesizer."""
        return self.block_size

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                module.bias.data.zero_()
        elif isinstance(module, nn.LayerNorm):
            module.bias.data.zero_()
            module.weight.data.fill_(1.0)

    @torch.no_grad()
    def attention_maps(self, idx):
        """
        One forward pass of idx (B, T) that keeps the attention weights of every layer: returns
        the logits and, in the order the layers run, a list of (layer name, (B, n_head, queries,
        keys) weights). The perceiver's down block has the basis as queries and the input as keys,
        its up block the reverse.
        """
        layers = [(name, m) for name, m in self.named_modules() if isinstance(m, attention.MultiHeadAttention)]
        for _, layer in layers:
            layer.keep_weights = True
        try:
            logits, _ = self(idx)
        finally:
            for _, layer in layers:
                layer.keep_weights = False
        return logits, [(name, layer.weights) for name, layer in layers]

    def new_decode_state(self):
        return DecodeState(self.n_layer)

    def forward(self, idx, targets=None, state=None):
        """
        idx (B, T) of token ids -> (logits (B, T, vocab_size), loss or None). With a DecodeState,
        idx (B, 1) is the next position after those already decoded into the state.
        """
        b, t = idx.size()
        start = 0 if state is None else state.position
        assert start + t <= self.block_size, "Cannot forward, model block size is exhausted."
        assert state is None or t == 1, "decoding takes one position at a time"
        caches = [None] * self.n_layer if state is None else state.caches

        x = self.tok_emb(idx)
        if self.pos_emb is not None:
            x = x + self.pos_emb[:, start:start + t, :]
        x = self.drop(x)
        if self.bottleneck:
            x_input = x
            if state is None or start < self.bottleneck_dim:
                x = self.down_block(x_input, caches[0])
                for block, cache in zip(self.blocks, caches[1:-1]):
                    x = block(x, cache)
            else:
                x = None  # no basis vector of its own at this position
            x = self.up_block(x, x_input, caches[-1])
        else:
            for block, cache in zip(self.blocks, caches):
                x = block(x, cache)
        logits = self.head(self.ln_f(x))

        if state is not None:
            state.position += t
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1),
                                   ignore_index=self.ignore_index)
        return logits, loss
