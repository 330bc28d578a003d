"""
GPT model (minGPT, Karpathy), with the assignment's attention variants:
- vanilla: every Block uses CausalSelfAttention;
- synthesizer: every Block uses SynthesizerAttention;
- perceiver: a DownProjectBlock cross-attends from a learned basis of bottleneck_dim vectors to
  the input, n_layer-2 Blocks run on that short sequence, and an UpProjectBlock cross-attends from
  the input back to it, which brings the length back to the input's.
"""
import copy

import torch
import torch.nn as nn
from torch.nn import functional as F

import attention


class GPTConfig:
    """The model's size and options; keyword arguments override the class attributes."""
    embd_pdrop = 0.1
    resid_pdrop = 0.1
    attn_pdrop = 0.1
    synthesizer = False
    perceiver = False
    bottleneck_dim = None
    fast = True  # False: attention and dropout computed as the original code did, for reference

    def __init__(self, vocab_size, block_size, **kwargs):
        self.vocab_size = vocab_size
        self.block_size = block_size
        for k, v in kwargs.items():
            setattr(self, k, v)


class Block(nn.Module):
    """An unassuming pre-LayerNorm Transformer block: x + attn(ln1(x)), then x + mlp(ln2(x))."""

    def __init__(self, config, attn=None):
        super().__init__()
        self.ln1 = nn.LayerNorm(config.n_embd)
        self.ln2 = nn.LayerNorm(config.n_embd)
        if attn is None:
            self_attention = (attention.SynthesizerAttention if config.synthesizer
                              else attention.CausalSelfAttention)
            attn = self_attention(config)
        self.attn = attn
        self.mlp = nn.Sequential(
            nn.Linear(config.n_embd, 4 * config.n_embd),
            nn.GELU(),
            nn.Linear(4 * config.n_embd, config.n_embd),
            attention.Dropout(config.resid_pdrop, config.fast),
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

    def __init__(self, config):
        super().__init__()
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)
        self.pos_emb = nn.Parameter(torch.zeros(1, config.block_size, config.n_embd))
        self.drop = attention.Dropout(config.embd_pdrop, config.fast)
        self.perceiver = config.perceiver
        if config.perceiver:
            self.down_block = DownProjectBlock(config)
            # the middle blocks' causal masks span the m basis positions
            bottleneck = copy.copy(config)
            bottleneck.block_size = config.bottleneck_dim
            self.blocks = nn.ModuleList(Block(bottleneck) for _ in range(config.n_layer - 2))
            self.up_block = UpProjectBlock(config)
        else:
            self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.block_size = config.block_size
        self.bottleneck_dim = config.bottleneck_dim
        self.n_layer = config.n_layer
        self.apply(self._init_weights)
        print(f"number of parameters: {sum(p.numel() for p in self.parameters())}")

    def get_block_size(self):
        return self.block_size

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                module.bias.data.zero_()
        elif isinstance(module, nn.LayerNorm):
            module.bias.data.zero_()
            module.weight.data.fill_(1.0)

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

        x = self.drop(self.tok_emb(idx) + self.pos_emb[:, start:start + t, :])
        if self.perceiver:
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
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=0)
        return logits, loss
