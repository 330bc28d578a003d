"""
The attentions of the assignment's editions. They share the value and output projections, the
head split and the causal mask; they differ only in how the attention scores are made:

    CausalSelfAttention   scores = (X Q_i)(X K_i)^T / sqrt(d/h)                (vanilla)
    CausalCrossAttention  scores = (X_q Q_i)(X_kv K_i)^T / sqrt(d/h)           (perceiver, 2023)
    SynthesizerAttention  scores = ReLU(X A_i + b1) B_i + b2                   (synthesizer, 2021)
    RotarySelfAttention   scores[t, s] = R_t(x_t Q_i) . R_s(x_s K_i) / sqrt(d/h)  (rope, 2024)

where R_t rotates each pair of neighbouring features of a head by t times that pair's frequency
(rotary position embedding), so that a score depends on the positions only through t - s.

Each then computes softmax(masked scores) (X V_i), concatenates the heads and projects with A.
The mask is tril(block_size)[:Tq, :Tk]: query i sees keys 0..i.

When a KVCache is passed, the call decodes one new position: it appends that position's keys and
values to the cache and attends over everything cached, which are exactly the positions the
causal mask would let it see.
"""
import math

import torch
import torch.nn as nn
from torch.nn import functional as F


class KVCache:
    """The keys and values of the positions decoded so far, for one attention layer."""

    def __init__(self):
        self.k = self.v = None

    def __len__(self):
        return 0 if self.v is None else self.v.size(2)

    def append(self, k, v):
        """Add (B, nh, T, hs) keys and values; returns everything cached."""
        if self.v is None:
            self.k, self.v = k, v
        else:
            self.k = None if k is None else torch.cat([self.k, k], dim=2)
            self.v = torch.cat([self.v, v], dim=2)
        return self.k, self.v


class Dropout(nn.Dropout):
    """
    nn.Dropout, except when training on the CPU (and not `as_original`): there the keep-mask is
    drawn as 31-bit random integers, which takes half the time of torch's bernoulli_ and drops with
    the same probability (to within 2^-31). On a GPU, and under torch.compile, torch's fused
    kernels win.
    """

    def __init__(self, p, as_original=False):
        super().__init__(p)
        self.as_original = as_original

    def forward(self, x):
        if (not self.as_original and self.training and 0 < self.p < 1 and x.device.type == "cpu"
                and not torch.compiler.is_compiling()):
            keep = torch.empty_like(x, dtype=torch.int32).random_() >= round(self.p * 2**31)
            return x * torch.where(keep, 1 / (1 - self.p), 0.0)
        return super().forward(x)


def additive_mask(mask, bias):
    """What the scores add: the bias (or 0) where `mask` allows a key, -inf where it forbids."""
    bias = 0.0 if bias is None else bias
    return bias if mask is None else torch.where(mask, bias, float("-inf"))


def attend(q, k, v, mask, dropout, as_original, scale=None, bias=None):
    """
    softmax(q k^T * scale + bias, masked) v over (B, nh, T, hs) tensors. `mask` is a bool
    (Tq, Tk) matrix of allowed positions, or None when every key is visible; `dropout` drops
    attention weights in training. as_original=True computes it step by step as the original code
    did; otherwise the same function is computed faster.
    """
    dropout_p = dropout.p if dropout.training else 0.0
    if not as_original and (dropout_p == 0 or q.device.type != "cpu"):  # torch's fused kernels
        if bias is None and (mask is None or mask.size(0) == mask.size(1)):
            # no mask, or a square slice of tril (the plain causal mask): the fastest kernels
            return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p,
                                                  is_causal=mask is not None, scale=scale)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=additive_mask(mask, bias),
                                              dropout_p=dropout_p, scale=scale)
    if not as_original:
        # Training on the CPU, where torch's fused kernels cannot drop out and their fallback is
        # slower than this: scale q, which is smaller than the scores, and mask in place.
        scale = 1.0 / math.sqrt(q.size(-1)) if scale is None else scale
        att = (q * scale) @ k.transpose(-2, -1)  # (B, nh, Tq, Tk)
        att += additive_mask(mask, bias)
        return dropout(F.softmax(att, dim=-1)) @ v
    return dropout(attention_weights(q, k, mask, scale, bias)) @ v


def attention_weights(q, k, mask, scale=None, bias=None):
    """softmax(q k^T * scale + bias) with the keys that `mask` forbids at -inf, step by step as
    the original code computed it: (B, nh, Tq, Tk). The scale defaults to 1/sqrt(head size)."""
    scale = 1.0 / math.sqrt(q.size(-1)) if scale is None else scale
    att = (q @ k.transpose(-2, -1)) * scale
    if bias is not None:
        att = att + bias
    if mask is not None:
        att = att.masked_fill(~mask, float("-inf"))
    return F.softmax(att, dim=-1)


class MultiHeadAttention(nn.Module):
    """What every variant shares: value and output projections, heads, dropout and the mask."""

    def __init__(self, config):
        super().__init__()
        assert config.n_embd % config.n_head == 0
        self.value = nn.Linear(config.n_embd, config.n_embd)
        self.attn_drop = Dropout(config.attn_pdrop, config.as_original)
        self.resid_drop = Dropout(config.resid_pdrop, config.as_original)
        self.proj = nn.Linear(config.n_embd, config.n_embd)
        # kept as a saved buffer, as in the original code, so that params files load both ways
        self.register_buffer("mask", torch.tril(torch.ones(config.block_size, config.block_size))
                             .view(1, 1, config.block_size, config.block_size))
        self.n_head = config.n_head
        self.as_original = config.as_original
        self.keep_weights = False  # True: keep the attention weights of each call in self.weights
        self.weights = None

    def split_heads(self, x):
        B, T, C = x.size()
        return x.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)

    def causal_mask(self, Tq, Tk, cache):
        # while decoding with a cache, every cached key is at or before the query
        return None if cache is not None else self.mask[0, 0, :Tq, :Tk].bool()

    def attend(self, q, k, v, mask, scale=None, bias=None):
        if torch.is_autocast_enabled(q.device.type):
            # in float32 even under bfloat16 autocast: scores reach the hundreds at this learning
            # rate, where bfloat16's 8-bit mantissa is off by up to 1 (the likely cause of the
            # bfloat16 divergence in REPORT.md)
            with torch.autocast(q.device.type, enabled=False):
                return self.attend(q.float(), k.float(), v.float(), mask, scale, bias)
        if self.keep_weights:  # to look inside: the explicit softmax, whose weights can be kept
            self.weights = attention_weights(q, k, mask, scale, bias)
            return self.attn_drop(self.weights) @ v
        return attend(q, k, v, mask, self.attn_drop, self.as_original, scale, bias)

    def output(self, y):
        B, nh, T, hs = y.size()
        y = y.transpose(1, 2).contiguous().view(B, T, nh * hs)  # re-assemble the heads
        return self.resid_drop(self.proj(y))


class CausalCrossAttention(MultiHeadAttention):
    """Queries from x_q attend to keys and values from x_kv (x_kv=None: use only the cache)."""

    def __init__(self, config):
        super().__init__(config)
        self.key = nn.Linear(config.n_embd, config.n_embd)
        self.query = nn.Linear(config.n_embd, config.n_embd)

    def forward(self, x_kv, x_q, cache=None):
        q = self.split_heads(self.query(x_q))
        if x_kv is None:
            k, v = cache.k, cache.v
        else:
            k, v = self.split_heads(self.key(x_kv)), self.split_heads(self.value(x_kv))
            q, k = self.add_positions(q, k, start=0 if cache is None else len(cache))
            if cache is not None:
                k, v = cache.append(k, v)
        mask = self.causal_mask(q.size(2), k.size(2), cache)
        return self.output(self.attend(q, k, v, mask))

    def add_positions(self, q, k, start):
        """Queries and keys of positions start, start+1, ...: here the model's pos_emb holds the
        positions already."""
        return q, k


class CausalSelfAttention(CausalCrossAttention):
    """Vanilla multi-head masked self-attention."""

    def forward(self, x, cache=None):
        return super().forward(x, x, cache)


def precompute_rotary_emb(dim, max_positions):
    """
    cos and sin of the angle t * theta_j for every position t < max_positions and every pair j of
    a head's dim features, theta_j = 10000^(-2j/dim): a (max_positions, dim/2, 2) tensor.
    """
    theta = 10000.0 ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)   # (dim/2,)
    angles = torch.arange(max_positions, dtype=torch.float64)[:, None] * theta  # (T, dim/2)
    return torch.stack([angles.cos(), angles.sin()], dim=-1).float()


def apply_rotary_emb(x, rope_cache):
    """
    Rotate the (B, nh, T, hs) queries or keys x by their positions, rope_cache's rows: the pair
    of neighbouring features (a, b) = (x[2j], x[2j+1]) becomes (a cos - b sin, a sin + b cos),
    the complex number a + ib times e^(i t theta_j).
    """
    cos, sin = rope_cache[..., 0], rope_cache[..., 1]  # (T, hs/2)
    a, b = x[..., 0::2], x[..., 1::2]                  # (B, nh, T, hs/2)
    return torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1).flatten(-2)


class RotarySelfAttention(CausalSelfAttention):
    """
    Self-attention with rotary position embeddings (RoPE, Su et al. 2021): the queries and keys
    of each head, not the values, are rotated by their position before the scores are made. The
    angles are precomputed into the saved buffer rope_cache, (block_size, hs/2, 2).
    """

    def __init__(self, config):
        super().__init__(config)
        head_size = config.n_embd // config.n_head
        assert head_size % 2 == 0, "RoPE rotates pairs of features: the head size must be even"
        self.register_buffer("rope_cache", precompute_rotary_emb(head_size, config.block_size))

    def add_positions(self, q, k, start):
        # while decoding, the new position is `start`, the number of positions already cached
        rope_cache = self.rope_cache[start:start + q.size(2)]
        return apply_rotary_emb(q, rope_cache), apply_rotary_emb(k, rope_cache)


class SynthesizerAttention(MultiHeadAttention):
    """
    The dense Synthesizer (Tay et al. 2020): each position makes its own attention scores over
    positions 0..T-1 with a two-layer MLP, ReLU(X A_i + b1) B_i + b2, instead of comparing a
    query with keys. w1 holds every A_i and b1; w2 (= B, shared by the heads) and b2 have one
    column per position, of which a sequence of length T uses the first T.
    """

    def __init__(self, config):
        super().__init__(config)
        self.w1 = nn.Linear(config.n_embd, config.n_embd)
        self.w2 = nn.Parameter(torch.zeros(config.n_embd // config.n_head, config.block_size - 1))
        self.b2 = nn.Parameter(torch.zeros(config.block_size - 1))
        nn.init.uniform_(self.w2, -0.001, 0.001)

    def forward(self, x, cache=None):
        B, T, C = x.size()
        hidden = self.split_heads(F.relu(self.w1(x)))  # (B, nh, T, hs)
        v = self.split_heads(self.value(x))
        if cache is not None:
            _, v = cache.append(None, v)
        Tk = v.size(2)
        # the MLP's second layer acts like T fixed "keys", one per position, with scale 1
        positions = self.w2[:, :Tk].t().expand(B, self.n_head, Tk, C // self.n_head)
        mask = self.causal_mask(T, Tk, cache)
        return self.output(self.attend(hidden, positions, v, mask, scale=1.0, bias=self.b2[:Tk]))
