"""
The model and its four attention variants (the handouts' equations, written out head by head in
tests/reference.py), and greedy decoding.
"""
import math

import pytest
import torch
from torch.nn import functional as F

import attention
import model
import utils
from reference import reference_logits

VOCAB, BLOCK, LAYERS, HEADS, EMBD = 13, 16, 4, 2, 8
VARIANT_OPTIONS = {
    "vanilla": {},
    "synthesizer": {"synthesizer": True},
    "perceiver": {"perceiver": True, "bottleneck_dim": 5},
    "rope": {"rope": True},
}
VARIANTS = list(VARIANT_OPTIONS)


def tiny_model(variant, seed=0, **options):
    torch.manual_seed(seed)
    config = model.GPTConfig(VOCAB, BLOCK, n_layer=LAYERS, n_head=HEADS, n_embd=EMBD,
                             **VARIANT_OPTIONS[variant], **options)
    gpt = model.GPT(config)
    with torch.no_grad():
        # move the zero-initialised parameters off zero, so every one matters, and make the
        # attention scores large enough that the attention weights are far from uniform
        gpt.tok_emb.weight.normal_(0, 0.5)
        if gpt.pos_emb is not None:
            gpt.pos_emb.normal_(0, 0.5)
        for name, p in gpt.named_parameters():
            if name.endswith("bias") or name.endswith("b2"):
                p.normal_(0, 0.1)
            elif name.endswith(("query.weight", "key.weight", "w1.weight", "w2", "value.weight", "head.weight")):
                p.normal_(0, 0.5)
    return gpt.eval()


def random_ids(B, T, seed=1):
    return torch.randint(0, VOCAB, (B, T), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("variant, options, count", [
    ("vanilla", {}, 3_323_392),
    # each layer's attention: w1 (256*256+256), w2 (32*127), b2 (127) instead of key and query
    ("synthesizer", {"synthesizer": True}, 3_323_392 - 4 * (2 * 65_792 - 65_792 - 32 * 127 - 127)),
    # the basis C adds m*256
    ("perceiver", {"perceiver": True, "bottleneck_dim": 32}, 3_323_392 + 32 * 256),
    ("perceiver", {"perceiver": True, "bottleneck_dim": 64}, 3_323_392 + 64 * 256),
    # no position embedding (128*256); the rotation has no parameters
    ("rope", {"rope": True}, 3_323_392 - 128 * 256),
])
def test_parameter_counts_at_the_assignment_size(variant, options, count):
    gpt = model.GPT(model.GPTConfig(256, 128, n_layer=4, n_head=8, n_embd=256, **options))
    assert sum(p.numel() for p in gpt.parameters()) == count


@pytest.mark.parametrize("variant", VARIANTS)
def test_shapes_and_loss_ignores_pad_targets(variant):
    gpt = tiny_model(variant)
    idx = random_ids(3, BLOCK - 1)
    targets = random_ids(3, BLOCK - 1, seed=2)
    targets[:, :5] = 0  # PAD
    logits, loss = gpt(idx, targets)
    assert logits.shape == (3, BLOCK - 1, VOCAB)
    keep = targets != 0
    assert torch.allclose(loss, F.cross_entropy(logits[keep], targets[keep]))
    assert gpt(idx)[1] is None


@pytest.mark.parametrize("variant", VARIANTS)
def test_output_at_t_never_depends_on_inputs_after_t(variant):
    gpt = tiny_model(variant)
    idx = random_ids(1, BLOCK - 1)
    logits, _ = gpt(idx)
    for t in range(BLOCK - 2):
        changed = idx.clone()
        changed[:, t + 1:] = (changed[:, t + 1:] + 1) % VOCAB
        assert torch.allclose(gpt(changed)[0][:, :t + 1], logits[:, :t + 1], atol=1e-6), t


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("T", [3, BLOCK - 1])  # shorter and longer than the perceiver's basis
def test_model_matches_the_equations(variant, T):
    gpt = tiny_model(variant)
    idx = random_ids(2, T)
    expected = reference_logits(gpt.state_dict(), idx, LAYERS, HEADS, variant)
    assert torch.allclose(gpt(idx)[0], expected, atol=1e-5)


# training (on the CPU) takes another fast path than evaluation; a dropout probability this small
# drops nothing in either model, so both must compute the same function
@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("variant", VARIANTS)
def test_fast_attention_equals_the_original_masked_softmax(variant, training):
    dropout = {"embd_pdrop": 1e-9, "resid_pdrop": 1e-9, "attn_pdrop": 1e-9}
    fast, original = tiny_model(variant, **dropout), tiny_model(variant, as_original=True, **dropout)
    original.load_state_dict(fast.state_dict())
    fast.train(training)
    original.train(training)
    idx, targets = random_ids(4, BLOCK - 1), random_ids(4, BLOCK - 1, seed=3)
    (logits_f, loss_f), (logits_o, loss_o) = fast(idx, targets), original(idx, targets)
    assert torch.allclose(logits_f, logits_o, atol=1e-5)
    loss_f.backward()
    loss_o.backward()
    for (name, p_f), p_o in zip(fast.named_parameters(), original.parameters()):
        assert torch.allclose(p_f.grad, p_o.grad, atol=1e-5), name


@pytest.mark.parametrize("as_original", [False, True])
def test_dropout_drops_a_tenth_and_scales_the_rest(as_original):
    dropout = attention.Dropout(0.1, as_original)
    x = torch.ones(1000, 1000, requires_grad=True)
    y = dropout(x)
    kept = y != 0
    # a million draws: the kept share is within 7 standard deviations (3e-4 each) of 0.9
    assert abs(kept.float().mean().item() - 0.9) < 0.002
    assert torch.allclose(y[kept], torch.tensor(1 / 0.9))
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # the gradient passes where kept, scaled alike
    assert torch.equal(dropout.eval()(x), x)


def test_params_keep_the_original_names_and_masks():
    vanilla = tiny_model("vanilla").state_dict()
    layer = ["ln1.weight", "ln1.bias", "ln2.weight", "ln2.bias", "attn.mask",
             "attn.key.weight", "attn.key.bias", "attn.query.weight", "attn.query.bias",
             "attn.value.weight", "attn.value.bias", "attn.proj.weight", "attn.proj.bias",
             "mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias"]
    expected = {"tok_emb.weight", "pos_emb", "ln_f.weight", "ln_f.bias", "head.weight"}
    expected |= {f"blocks.{n}.{name}" for n in range(LAYERS) for name in layer}
    assert set(vanilla) == expected
    assert torch.equal(vanilla["blocks.0.attn.mask"], torch.tril(torch.ones(BLOCK, BLOCK)).view(1, 1, BLOCK, BLOCK))
    synthesizer = tiny_model("synthesizer").state_dict()
    assert {"blocks.0.attn.w1.weight", "blocks.0.attn.w1.bias", "blocks.0.attn.w2", "blocks.0.attn.b2"} <= set(synthesizer)
    assert synthesizer["blocks.0.attn.w2"].shape == (EMBD // HEADS, BLOCK - 1)
    perceiver = tiny_model("perceiver").state_dict()
    assert perceiver["down_block.C"].shape == (1, 5, EMBD)
    assert perceiver["blocks.0.attn.mask"].shape == (1, 1, 5, 5)
    assert {"up_block.attn.key.weight", "up_block.ln1.weight"} <= set(perceiver)
    rope = tiny_model("rope").state_dict()
    # vanilla's names, less the position embedding, plus the saved angles of each layer
    assert set(rope) == expected - {"pos_emb"} | {f"blocks.{n}.attn.rope_cache" for n in range(LAYERS)}
    assert rope["blocks.0.attn.rope_cache"].shape == (BLOCK, EMBD // HEADS // 2, 2)


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_variant_is_told_by_the_params_keys(variant):
    assert model.variant_of(tiny_model(variant).state_dict()) == variant


@pytest.mark.parametrize("options, message", [
    ({"synthesizer": True, "rope": True}, "one variant at a time, not synthesizer and rope"),
    ({"perceiver": True}, "the perceiver needs bottleneck_dim"),
])
def test_a_config_refuses_what_it_cannot_build(options, message):
    with pytest.raises(ValueError, match=message):
        model.GPTConfig(VOCAB, BLOCK, n_layer=LAYERS, n_head=HEADS, n_embd=EMBD, **options)
    with pytest.raises(TypeError, match="synthesiser"):  # a misspelt option is not ignored
        model.GPTConfig(VOCAB, BLOCK, n_layer=LAYERS, n_head=HEADS, n_embd=EMBD, synthesiser=True)


def test_rope_cache_holds_cos_and_sin_of_position_times_frequency():
    cache = attention.precompute_rotary_emb(8, 20)
    t, j = 13, 2
    angle = t * 10000 ** (-2 * j / 8)
    assert cache.shape == (20, 4, 2)
    assert cache[t, j].tolist() == pytest.approx([math.cos(angle), math.sin(angle)], abs=1e-6)


def test_rope_rotates_neighbouring_pairs():
    cache = attention.precompute_rotary_emb(4, 8)
    x = torch.tensor([1.0, 2.0, 3.0, 4.0]).expand(1, 1, 8, 4)
    t = 5
    (c0, s0), (c1, s1) = cache[t].tolist()
    expected = [1 * c0 - 2 * s0, 1 * s0 + 2 * c0, 3 * c1 - 4 * s1, 3 * s1 + 4 * c1]
    assert attention.apply_rotary_emb(x, cache)[0, 0, t].tolist() == pytest.approx(expected, abs=1e-6)


def test_rope_score_depends_only_on_the_offset_between_query_and_key():
    head_size, T = 32, 64
    cache = attention.precompute_rotary_emb(head_size, T)
    q, k = torch.randn(2, head_size, generator=torch.Generator().manual_seed(0))
    # the same query and the same key at every position: the scores may differ only by position
    scores = (attention.apply_rotary_emb(q.expand(1, 1, T, head_size), cache)
              @ attention.apply_rotary_emb(k.expand(1, 1, T, head_size), cache).transpose(-2, -1))[0, 0]
    for shift in (1, 7, 30):
        assert torch.allclose(scores[shift:, shift:], scores[:-shift, :-shift], atol=1e-4)
    # and they do depend on the offset: far more than the tolerance
    assert (scores[1:, 0] - scores[0, 0]).abs().max() > 1.0


def test_initialisation_follows_mingpt():
    gpt = model.GPT(model.GPTConfig(256, 128, n_layer=4, n_head=8, n_embd=256, synthesizer=True))
    assert abs(gpt.blocks[0].mlp[0].weight.std().item() - 0.02) < 1e-3
    assert gpt.blocks[0].mlp[0].bias.abs().max() == 0
    assert torch.equal(gpt.ln_f.weight, torch.ones(256))
    assert gpt.pos_emb.abs().max() == 0
    assert gpt.blocks[0].attn.w2.abs().max() <= 0.001


def test_perceiver_basis_is_xavier_uniform():
    m, d = 64, 256
    basis = model.GPT(model.GPTConfig(256, 128, n_layer=4, n_head=8, n_embd=d, perceiver=True,
                                      bottleneck_dim=m)).down_block.C
    # torch's fans for a (1, m, d) tensor: m*d in, d out; uniform on +-bound has sd bound/sqrt(3)
    bound = math.sqrt(6 / (m * d + d))
    assert basis.abs().max() <= bound
    assert basis.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.02)


@pytest.mark.parametrize("variant", VARIANTS)
def test_cached_decoding_gives_the_logits_of_full_forward_passes(variant):
    gpt = tiny_model(variant)
    idx = random_ids(3, BLOCK - 1)
    full = gpt(idx)[0]
    # with these weights attention matters: changing the earlier tokens moves the last logits
    # thousands of times the tolerance below, so a cache that forgets positions cannot pass
    changed = idx.clone()
    changed[:, :-1] = (changed[:, :-1] + 1) % VOCAB
    assert (gpt(changed)[0][:, -1] - full[:, -1]).abs().max() > 0.05
    state = gpt.new_decode_state()
    decoded = torch.cat([gpt(idx[:, t:t + 1], state=state)[0] for t in range(BLOCK - 1)], dim=1)
    assert torch.allclose(decoded, full, atol=1e-5)


@pytest.mark.parametrize("variant", VARIANTS)
def test_batched_greedy_decoding_equals_sampling_one_prompt_at_a_time(variant):
    gpt = tiny_model(variant)
    gen = torch.Generator().manual_seed(5)
    prompts = [torch.randint(0, VOCAB, (int(n),), generator=gen)
               for n in torch.randint(1, 8, (12,), generator=gen)]
    steps = BLOCK - 7
    one_at_a_time = [utils.sample(gpt, p[None], steps)[0, len(p):].tolist() for p in prompts]
    # stop at a token the rows produce mid-way, so that both the stopping and the cut are tested
    stop_id = one_at_a_time[0][steps // 2]
    expected = [c[:c.index(stop_id) + 1] if stop_id in c else c for c in one_at_a_time]
    assert utils.greedy_decode(gpt, prompts, steps, stop_id) == expected
    assert any(len(c) < steps for c in expected) and any(len(c) > 1 for c in expected)


@pytest.mark.parametrize("variant", VARIANTS)
def test_attention_maps_are_the_causal_weights_the_model_computes(variant):
    gpt = tiny_model(variant)
    idx = random_ids(2, BLOCK - 1)
    logits, maps = gpt.attention_maps(idx)
    assert torch.allclose(logits, gpt(idx)[0], atol=1e-5)  # the same function as without keeping them
    T, m = BLOCK - 1, VARIANT_OPTIONS["perceiver"]["bottleneck_dim"]
    if variant == "perceiver":
        expected = [("down_block.attn", m, T), ("blocks.0.attn", m, m), ("blocks.1.attn", m, m),
                    ("up_block.attn", T, m)]
    else:
        expected = [(f"blocks.{n}.attn", T, T) for n in range(LAYERS)]
    assert [(name, *w.shape[2:]) for name, w in maps] == expected
    for name, weights in maps:
        assert weights.shape[:2] == (2, HEADS)
        assert torch.allclose(weights.sum(-1), torch.ones(()), atol=1e-5), name
        # query i sees keys 0..i only
        queries, keys = weights.shape[2:]
        assert torch.all(weights[..., ~torch.tril(torch.ones(queries, keys, dtype=torch.bool))] == 0), name


def test_a_synthesizer_row_depends_on_its_own_input_alone():
    # what the 2021 handout asks the synthesizer cannot do: its first layer's weights at position
    # i are made from x_i alone, so another character changes no other row; vanilla's weights
    # compare x_i with every x_j, so the rows after the change move
    idx = random_ids(1, BLOCK - 1)
    changed = idx.clone()
    changed[0, 3] = (idx[0, 3] + 1) % VOCAB
    first_layer = {}
    for variant in ("synthesizer", "vanilla"):
        gpt = tiny_model(variant)
        before, after = (gpt.attention_maps(x)[1][0][1][0] for x in (idx, changed))  # (heads, T, T)
        first_layer[variant] = (after - before).abs().amax(dim=(0, 2))  # the largest change of each row
    others = torch.arange(BLOCK - 1) != 3
    assert torch.all(first_layer["synthesizer"][others] == 0)
    assert first_layer["synthesizer"][3] > 0.05
    assert torch.all(first_layer["vanilla"][4:] > 0.01) and first_layer["vanilla"].max() > 0.1
