import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from interp_utils import heads
from interp_utils.circuits.heads import repeated_random_tokens


def random_model(**overrides) -> HookedTransformer:
    cfg = dict(n_layers=3, d_model=48, n_heads=3, d_head=8, n_ctx=32, d_vocab=40, attn_only=True, seed=0)
    return HookedTransformer(HookedTransformerConfig(**{**cfg, **overrides}))


def test_repeated_segments_repeat_at_varying_offsets():
    tokens, mask = heads.repeated_segment_batch(64, 48, 100, 5, 20, torch.Generator().manual_seed(0))
    assert tokens.shape == mask.shape == (64, 48) and (tokens[:, 0] == 0).all() and (tokens[:, 1:] > 0).all()
    offsets = set()
    for row, m in zip(tokens, mask, strict=True):
        where = m.nonzero().flatten()
        length = len(where) + 1
        assert 5 <= length <= 20 and (where.diff() == 1).all()
        second = int(where[0]) - 1
        # the copy's first token and the rest appear earlier, in the same order
        for first in range(1, second - length + 2):
            if torch.equal(row[first : first + length], row[second : second + length]):
                offsets.add(second - first)
                break
        else:
            raise AssertionError("masked segment is not a copy of an earlier segment")
    assert len(offsets) > 10, "the repeat should not sit at one fixed offset"
    with pytest.raises(ValueError, match="2 \\* max_len"):
        heads.repeated_segment_batch(2, 20, 100, 5, 10)


def test_masks_on_a_worked_example():
    tokens = torch.tensor([[0, 5, 6, 5, 6]])
    masks = heads.head_masks(tokens)
    assert masks["previous_token"][0, 3].nonzero().flatten().tolist() == [2]
    assert masks["duplicate_token"][0, 3].nonzero().flatten().tolist() == [1]
    assert masks["induction"][0, 3].nonzero().flatten().tolist() == [2]
    assert masks["induction"][0, 4].nonzero().flatten().tolist() == [3]
    assert not masks["induction"][0, :3].any()
    with pytest.raises(ValueError, match="batch, pos"):
        heads.head_masks(tokens[0])


def test_chance_of_previous_token_is_mean_of_one_over_position():
    tokens, _ = heads.repeated_segment_batch(4, 20, 50, 3, 8)
    expected = (1 / torch.arange(2, 21).float()).mean().item()
    assert heads.chance_scores(tokens)["previous_token"] == pytest.approx(expected, rel=1e-5)


def test_hand_built_heads_are_found(induction_model):
    tokens = repeated_random_tokens(induction_model, seq_len=25, batch=8)
    scores = heads.head_scores(induction_model, tokens)
    assert heads.top_heads(scores["induction"], 1) == [(1, 0)] and scores["induction"][1, 0] > 0.9
    assert heads.top_heads(scores["previous_token"], 1) == [(0, 0)] and scores["previous_token"][0, 0] > 0.9
    assert heads.head_label((1, 0)) == "1.0"


def test_composition_scores_match_transformer_lens():
    model = random_model()
    for mode in "QKV":
        assert torch.allclose(
            heads.composition_scores(model, mode), model.all_composition_scores(mode).cpu(), atol=1e-6
        )
    with pytest.raises(ValueError, match="mode"):
        heads.composition_scores(model, "X")


def test_hand_built_induction_head_k_composes_with_the_previous_token_head(induction_model):
    k = heads.composition_scores(induction_model, "K")
    mean, std = heads.composition_baseline(induction_model.cfg.d_model, induction_model.cfg.d_head)
    assert k[0, 0, 1, 0] > mean + 10 * std
    assert k[0, 0, 1, 1] == 0  # 1.1 has no weights
    assert heads.ov_eigen_copying(induction_model)[1, 1] == 0


def test_copying_scores_of_the_hand_built_head(induction_model, fresh_induction_model):
    eig = heads.ov_eigen_copying(induction_model)
    assert eig[1, 0] == pytest.approx(1.0, abs=1e-4)
    assert heads.ov_top1_copying(induction_model, [(1, 0)], n_tokens=64) == {(1, 0): 1.0}
    suppressor = fresh_induction_model  # a model of its own to change: the session fixture is shared
    with torch.no_grad():
        suppressor.W_U.neg_()
    assert heads.ov_eigen_copying(suppressor)[1, 0] == pytest.approx(-1.0, abs=1e-4)


def test_ablating_the_induction_head_removes_in_context_learning(induction_model):
    tokens = repeated_random_tokens(induction_model, seq_len=25, batch=8)
    second_half = slice(26, None)  # predictions of the second copy's tokens after its first
    clean = induction_model(tokens, return_type="loss", loss_per_token=True)[:, second_half].mean()
    zeroed = induction_model.run_with_hooks(
        tokens, return_type="loss", loss_per_token=True, fwd_hooks=heads.head_ablation_hooks([(1, 0)])
    )[:, second_half].mean()
    other = induction_model.run_with_hooks(
        tokens, return_type="loss", loss_per_token=True, fwd_hooks=heads.head_ablation_hooks([(1, 1)])
    )[:, second_half].mean()
    means = heads.mean_head_outputs(induction_model, tokens)
    assert means.shape == (2, 2, induction_model.cfg.d_head)
    assert clean < 1.0 and zeroed > clean + 3.0 and torch.isclose(other, clean)


def test_helpers_run_at_gpt2_small_size():
    """GPT-2 small's shapes (12 layers x 12 heads, d_model 768, vocabulary 50257), randomly initialised."""
    cfg = dict(n_layers=12, d_model=768, n_heads=12, d_head=64, d_mlp=3072, n_ctx=1024, d_vocab=50257)
    model = HookedTransformer(HookedTransformerConfig(**cfg, act_fn="gelu_new", seed=0))
    tokens = repeated_random_tokens(model, seq_len=20, batch=2)
    scores = heads.head_scores(model, tokens)
    assert all(s.shape == (12, 12) for s in scores.values())
    assert heads.composition_scores(model, "K").shape == (12, 12, 12, 12)
    assert heads.ov_eigen_copying(model).shape == (12, 12)
    assert set(heads.ov_top1_copying(model, [(5, 1)], n_tokens=50)) == {(5, 1)}
    means = heads.mean_head_outputs(model, tokens)
    ablated = model.run_with_hooks(tokens, fwd_hooks=heads.head_ablation_hooks([(5, 1), (5, 5), (7, 10)], means))
    assert ablated.shape == (2, 41, 50257)


def test_repeated_tokens_repeat():
    model = random_model(n_layers=2, d_model=32, n_heads=2, d_head=16, n_ctx=64, d_vocab=50)
    tokens = heads.repeated_random_tokens(model, seq_len=10, batch=3)
    assert tokens.shape == (3, 21)
    assert torch.equal(tokens[:, 1:11], tokens[:, 11:])
    with pytest.raises(ValueError, match="exceeds the model's context"):
        heads.repeated_random_tokens(model, seq_len=40, batch=1)


def test_random_model_scores_near_chance():
    model = random_model(n_layers=2, d_model=32, n_heads=2, d_head=16, n_ctx=64, d_vocab=50)
    scores, chance = heads.induction_scores(model, seq_len=20, batch=8)
    assert scores.shape == (2, 2)
    assert scores.max() < 5 * chance


def test_hand_built_induction_head_is_found(induction_model):
    scores, chance = heads.induction_scores(induction_model, seq_len=25, batch=8)
    assert scores[1, 0] > 0.75 and scores[1, 0] > 10 * chance
    assert scores[0, 0] < 0.1 and scores[1, 1] < 0.1


def test_an_untrained_copy_has_the_shape_fresh_weights_and_leaves_the_random_state_alone():
    model = random_model(seed=3)
    with torch.no_grad():
        model.W_Q.mul_(2.0)  # as if trained: no longer what the config's seed gives
    state = torch.random.get_rng_state()
    fresh, again = heads.untrained_copy(model, seed=1), heads.untrained_copy(model, seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert fresh.cfg.n_layers == model.cfg.n_layers and fresh.W_Q.shape == model.W_Q.shape
    assert torch.equal(fresh.W_Q, again.W_Q) and not torch.equal(fresh.W_Q, model.W_Q)
    assert not torch.equal(heads.untrained_copy(model, seed=2).W_Q, fresh.W_Q)
    assert model.cfg.seed == 3  # the model's own config is not touched


def test_uniform_layer_1_attention_falls_outside_the_induction_band(induction_model):
    """Mutation: the hand-built induction head with its attention made uniform no longer passes lesson 02's band."""
    tokens = repeated_random_tokens(induction_model, seq_len=25, batch=8)
    band = heads.INDUCTION_CHANCE_FACTOR * heads.chance_scores(tokens)["induction"]
    assert heads.head_scores(induction_model, tokens)["induction"][1].max() >= band

    def uniform(pattern: torch.Tensor, hook) -> torch.Tensor:
        n = pattern.shape[-1]
        return (torch.tril(torch.ones(n, n)) / torch.arange(1, n + 1)[:, None]).expand_as(pattern).to(pattern)

    with induction_model.hooks(fwd_hooks=[("blocks.1.attn.hook_pattern", uniform)]):
        mutated = heads.head_scores(induction_model, tokens)["induction"][1].max()
    assert mutated < band
