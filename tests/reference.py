"""
A direct, slow implementation of the assignment's equations, head by head, reading the weights
straight from a state_dict with the original code's parameter names. The model must agree with it.
"""
import math

import torch
from torch.nn import functional as F


def linear(state, name, x):
    y = x @ state[name + ".weight"].t()
    return y + state[name + ".bias"] if name + ".bias" in state else y


def layer_norm(state, name, x):
    return F.layer_norm(x, x.shape[-1:], state[name + ".weight"], state[name + ".bias"])


def masked_softmax_times_values(scores, v):
    Tq, Tk = scores.shape[-2:]
    allowed = torch.tril(torch.ones(max(Tq, Tk), max(Tq, Tk)))[:Tq, :Tk]  # query i sees keys 0..i
    return F.softmax(scores.masked_fill(allowed == 0, float("-inf")), dim=-1) @ v


def rotate(x):
    """RoPE: each pair of neighbouring features (a, b) at position t, as the complex number a + ib,
    times e^(i t theta_j), theta_j = 10000^(-2j/d) for pair j of a head of d features."""
    T, d = x.shape[-2:]
    theta = torch.tensor([10000.0 ** (-2 * j / d) for j in range(d // 2)], dtype=torch.float64)
    turn = torch.polar(torch.ones(T, d // 2, dtype=torch.float64), torch.arange(T)[:, None] * theta)
    pairs = torch.view_as_complex(x.double().reshape(*x.shape[:-1], d // 2, 2).contiguous())
    return torch.view_as_real(pairs * turn).reshape(x.shape).to(x.dtype)


def attention(state, name, x_q, x_kv, n_head, variant="vanilla"):
    """Y = [Y_1 .. Y_h] A, one head at a time."""
    d = x_q.shape[-1]
    hs = d // n_head
    v = linear(state, name + ".value", x_kv)
    heads = []
    for i in range(n_head):
        cols = slice(i * hs, (i + 1) * hs)
        if variant == "synthesizer":
            # Y_i = softmax(ReLU(X A_i + b1) B_i + b2) (X V_i)
            T = x_q.shape[-2]
            hidden = F.relu(x_q @ state[name + ".w1.weight"][cols].t() + state[name + ".w1.bias"][cols])
            scores = hidden @ state[name + ".w2"][:, :T] + state[name + ".b2"][:T]
        else:
            # Y_i = softmax((X_q Q_i)(X_kv K_i)^T / sqrt(d/h)) (X_kv V_i)
            q = linear(state, name + ".query", x_q)[..., cols]
            k = linear(state, name + ".key", x_kv)[..., cols]
            if variant == "rope":
                q, k = rotate(q), rotate(k)
            scores = q @ k.transpose(-2, -1) / math.sqrt(hs)
        heads.append(masked_softmax_times_values(scores, v[..., cols]))
    return linear(state, name + ".proj", torch.cat(heads, dim=-1))


def mlp(state, name, x):
    return linear(state, name + ".mlp.2", F.gelu(linear(state, name + ".mlp.0", x)))


def block(state, name, x, n_head, variant="vanilla"):
    h = layer_norm(state, name + ".ln1", x)
    x = x + attention(state, name + ".attn", h, h, n_head, variant)
    return x + mlp(state, name, layer_norm(state, name + ".ln2", x))


def reference_logits(state, idx, n_layer, n_head, variant):
    T = idx.shape[1]
    x = state["tok_emb.weight"][idx]
    if variant != "rope":  # RoPE puts the positions into the attention scores instead
        x = x + state["pos_emb"][:, :T]
    if variant == "perceiver":
        C = state["down_block.C"].expand(x.shape[0], -1, -1)
        y = C + attention(state, "down_block.attn", layer_norm(state, "down_block.ln1", C), x, n_head)
        y = y + mlp(state, "down_block", layer_norm(state, "down_block.ln2", y))
        for n in range(n_layer - 2):
            y = block(state, f"blocks.{n}", y, n_head)
        x = x + attention(state, "up_block.attn", x, layer_norm(state, "up_block.ln1", y), n_head)
        x = x + mlp(state, "up_block", layer_norm(state, "up_block.ln2", x))
    else:
        for n in range(n_layer):
            x = block(state, f"blocks.{n}", x, n_head, variant)
    return layer_norm(state, "ln_f", x) @ state["head.weight"].t()
