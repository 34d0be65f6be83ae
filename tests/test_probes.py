"""Probes recover a direction planted in synthetic data; steering adds exactly what it says; pinning a latent to its
own value changes nothing."""

import pytest
import torch

from interp_utils import facts, hooks, ioi, probes, steering
from interp_utils.dictionaries.sae import SAE, SAEConfig


def planted(n=2000, d=32, noise=1.0, seed=0):
    """Gaussian activations whose class shifts them along one known unit direction."""
    g = torch.Generator().manual_seed(seed)
    truth = torch.randn(d, generator=g)
    truth /= truth.norm()
    y = torch.rand(n, generator=g) < 0.5
    x = noise * torch.randn(n, d, generator=g) + (y.float()[:, None] * 2 - 1) * 1.5 * truth
    return x, y, truth


@pytest.mark.parametrize("fit", [probes.mass_mean_probe, probes.logistic_probe])
def test_probes_recover_the_planted_direction(fit):
    x, y, truth = planted()
    probe = fit(x[:1500], y[:1500])
    assert torch.nn.functional.cosine_similarity(probe.direction, truth, dim=0) > 0.95
    assert probe.accuracy(x[1500:], y[1500:]) > 0.9


def test_logistic_and_mass_mean_part_ways_under_correlated_noise():
    """With noise stretched along a second direction that leaks into the first, logistic regression tilts away from
    the planted direction to cancel the noise (a better classifier), while the difference of means stays on it."""
    x, y, truth = planted(noise=0.3)
    other = torch.randn(32, generator=torch.Generator().manual_seed(1))
    other -= (other @ truth) * truth
    other /= other.norm()
    x = x + 3.0 * torch.randn(len(x), 1, generator=torch.Generator().manual_seed(2)) * (truth + other)
    mm, lr = probes.mass_mean_probe(x, y), probes.logistic_probe(x, y)
    cos = torch.nn.functional.cosine_similarity
    assert cos(mm.direction, truth, dim=0) > cos(lr.direction, truth, dim=0)
    assert lr.accuracy(x, y) > mm.accuracy(x, y)


def test_top_latents_control_task_and_bad_inputs():
    acts = torch.zeros(6, 5)
    y = torch.tensor([True, True, True, False, False, False])
    acts[:3, 2], acts[3:, 4] = 1.0, 2.0
    assert set(probes.top_latents(acts, y, 2).tolist()) == {2, 4}
    tokens = torch.tensor([5, 7, 5, 9, 7, 5])
    labels = probes.control_labels(tokens, seed=3)
    assert labels[0] == labels[2] == labels[5] and labels[1] == labels[4]
    assert probes.selectivity(0.9, 0.6) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="Both classes"):
        probes.mass_mean_probe(acts, torch.ones(6, dtype=torch.bool))
    with pytest.raises(ValueError, match="one label per row"):
        probes.logistic_probe(acts, y[:4])
    with pytest.raises(ValueError, match="k must be between"):
        probes.top_latents(acts, y, 0)


def test_steering_adds_alpha_times_the_vector(bundled_model):
    tokens = bundled_model.to_tokens("When Mary and John went to the store")
    name = hooks.name("resid_pre", 2)
    _, clean = bundled_model.run_with_cache(tokens, names_filter=name)
    v = torch.randn(bundled_model.cfg.d_model)
    seen = {}
    store = [(name, lambda act, hook: seen.update(x=act.clone()))]
    bundled_model.run_with_hooks(tokens, fwd_hooks=steering.add_hooks(2, v, 3.0, positions=[-1]) + store)
    delta = seen["x"] - clean[name]
    assert torch.allclose(delta[0, -1], 3.0 * v, atol=1e-4) and delta[0, :-1].abs().max() < 1e-5
    vec = steering.actadd_vector(bundled_model, "Mary and John", "John and Mary", 2)
    assert vec.shape == (bundled_model.to_tokens("Mary and John").shape[1], bundled_model.cfg.d_model)
    assert vec[0].abs().max() < 1e-5 and vec[1:].abs().max() > 0.1  # BOS is the same in both prompts
    with pytest.raises(ValueError, match="pad the shorter one"):
        steering.actadd_vector(bundled_model, "Mary", "Mary and John", 2)


def test_pinning_a_latent_to_its_own_value_changes_nothing(bundled_model):
    torch.manual_seed(0)
    d = bundled_model.cfg.d_model
    sae = SAE(SAEConfig(d_in=d, d_sae=4 * d, architecture="relu"))
    tokens = bundled_model.to_tokens("When Mary and John went to the store, John gave a drink to")
    name = hooks.name("resid_post", 1)
    clean = bundled_model(tokens)
    _, cache = bundled_model.run_with_cache(tokens, names_filter=name)
    f = sae.encode(cache[name][:, 1:])
    latent = int(f.sum((0, 1)).argmax())
    value = f[0, 0, latent].item()
    one_token = bundled_model.to_tokens("When")  # BOS and one token: the pinned value is that token's own
    _, c1 = bundled_model.run_with_cache(one_token, names_filter=name)
    own = sae.encode(c1[name][:, 1:])[0, 0]
    same = bundled_model.run_with_hooks(one_token, fwd_hooks=steering.pin_hooks(sae, name, [int(own.argmax())],
                                                                                 own.max()))  # fmt: skip
    assert torch.allclose(same, bundled_model(one_token), atol=1e-4)
    moved = bundled_model.run_with_hooks(tokens, fwd_hooks=steering.pin_hooks(sae, name, [latent], value + 10.0))
    assert (moved - clean).abs().max() > 1e-3


def test_ioi_statements_and_residuals_at_the_completing_name(bundled_model):
    prompts = ioi.default_prompts(bundled_model, 6, seed=0)
    batch = ioi.ioi_batch(bundled_model, prompts)
    tokens, labels, at = ioi.statements(batch)
    assert tokens.shape == (12, batch.tokens.shape[1] + 1) and labels.tolist() == [True] * 6 + [False] * 6
    for i, p in enumerate(prompts):
        for row, name in ((i, p.io), (i + 6, p.s)):
            want = bundled_model.to_tokens(p.text + " " + name)[0]
            assert torch.equal(tokens[row, : at[row] + 1].cpu(), want.cpu()), (p.text, name)
    acts = probes.residuals_at(bundled_model, tokens, at, batch_size=5)
    _, cache = bundled_model.run_with_cache(tokens[3:4])
    assert acts.shape == (12, bundled_model.cfg.n_layers, bundled_model.cfg.d_model)
    assert torch.allclose(acts[3, 2], cache[hooks.name("resid_post", 2)][0, at[3]], atol=1e-5)
    with pytest.raises(ValueError, match="one position per row"):
        probes.residuals_at(bundled_model, tokens, at[:3])


def test_label_noise_cosines_slope_and_logit_gap():
    y = torch.arange(10) % 2 == 0
    noisy = probes.flip_labels(y, 0.3, seed=1)
    assert int((noisy != y).sum()) == 3 and torch.equal(probes.flip_labels(y, 0.0), y)
    with pytest.raises(ValueError, match="between 0 and 1"):
        probes.flip_labels(y, 1.5)
    c = probes.cosines(torch.tensor([[1.0, 0.0], [1.0, 1.0]]))
    assert torch.allclose(c, torch.tensor([[1.0, 2**-0.5], [2**-0.5, 1.0]]))
    assert steering.slope([0.0, 1.0, 2.0], [1.0, 3.0, 5.0]) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="at least two"):
        steering.slope([1.0], [2.0])
    logits = torch.zeros(1, 2, 3)
    logits[0, 0] = torch.tensor([0.0, 0.0, 0.0])
    gap = steering.logit_gap(logits, torch.tensor([0]), torch.tensor([0, 1]), torch.tensor([2]))
    assert gap.item() == pytest.approx(float(torch.log(torch.tensor(2.0))))


def test_steering_one_position_per_row_and_after_bos(bundled_model):
    tokens = bundled_model.to_tokens(["When Mary and John went to the store", "When Mary and John went to the park"])
    name = hooks.name("resid_pre", 1)
    _, clean = bundled_model.run_with_cache(tokens, names_filter=name)
    seen = {}
    store = [(name, lambda act, hook: seen.update(x=act.clone()))]
    v = torch.ones(bundled_model.cfg.d_model)
    at = torch.tensor([2, 5])
    bundled_model.run_with_hooks(tokens, fwd_hooks=steering.add_hooks(1, v, 2.0, at=at) + store)
    delta = (seen["x"] - clean[name]).abs().sum(-1)
    assert delta[0, 2] > 0 and delta[1, 5] > 0 and delta.count_nonzero() == 2
    bundled_model.run_with_hooks(tokens, fwd_hooks=steering.add_hooks(1, v, 2.0) + store)
    assert (seen["x"] - clean[name])[:, 0].abs().max() == 0  # BOS is left alone
    with pytest.raises(ValueError, match="not both"):
        steering.add_hooks(1, v, positions=[1], at=at)


def test_capital_statements():
    from interp_utils import facts, standin

    pairs = facts.capitals()
    assert len(pairs) >= 50 and len({c for c, _ in pairs}) == len(pairs)
    model = standin.gpt2_standin()  # GPT-2's real tokenizer, random weights
    tokens, labels, at = facts.capital_statements(model, pairs[:5], seed=0)
    assert tokens.shape[0] == 10 and labels.tolist() == [True] * 5 + [False] * 5
    assert model.to_string(tokens[0, 1 : at[0] + 1]) == "The capital of France is Paris"
    false = model.to_string(tokens[5, 1 : at[5] + 1])
    assert false.startswith("The capital of France is ") and not false.endswith("Paris")
    with pytest.raises(ValueError, match="at least two"):
        facts.capital_statements(model, pairs[:1])


def test_third_name_statements_name_both_endings_once(bundled_model):
    names = ioi.single_token_names(bundled_model)
    prompts, third = facts.third_name_prompts(ioi.make_ioi_prompts(5, names, seed=0), names, seed=1)
    assert all(
        p.text.startswith(f"{c} went to the ") and c not in (p.io, p.s) for p, c in zip(prompts, third, strict=True)
    )
    batch = ioi.ioi_batch(bundled_model, prompts, corrupted=prompts)
    tokens, at = facts.mention_statements(bundled_model, batch, third)
    assert tokens.shape == (15, batch.tokens.shape[1] + 1) and facts.COMPLETIONS == ("io", "s", "third")
    counts = probes.earlier_mentions(tokens, at).view(3, 5)
    assert counts.tolist() == [[1] * 5, [2] * 5, [1] * 5]  # the IO and the third name once, the subject twice
    for i, (p, c) in enumerate(zip(prompts, third, strict=True)):
        for row, name in ((i, p.io), (5 + i, p.s), (10 + i, c)):
            assert torch.equal(tokens[row, : at[row] + 1].cpu(), bundled_model.to_tokens(f"{p.text} {name}")[0].cpu())
    assert facts.false_completions(4).tolist() == [1, 2, 1, 2]  # the subject and the third name, alternately
    with pytest.raises(ValueError, match="one third name per prompt"):
        facts.mention_statements(bundled_model, batch, third[:2])


def test_iid_mass_mean_probe_shuffled_labels_and_earlier_mentions():
    g = torch.Generator().manual_seed(0)
    y = torch.rand(300, generator=g) < 0.5
    # the classes differ along e0, but e1 varies far more within them and is correlated with e0
    noise = torch.randn(300, 2, generator=g) * torch.tensor([0.3, 3.0])
    x = noise @ torch.tensor([[1.0, 0.0], [0.9, 1.0]]) + y.float()[:, None] * torch.tensor([1.0, 0.0])
    plain, iid = probes.mass_mean_probe(x, y), probes.iid_mass_mean_probe(x, y)
    assert iid.accuracy(x, y) > plain.accuracy(x, y) + 0.1  # Σ⁻¹ discounts the noisy direction
    shuffled = probes.shuffled(y, seed=1)
    assert int(shuffled.sum()) == int(y.sum()) and not torch.equal(shuffled, y)
    tokens = torch.tensor([[0, 4, 4, 5, 4], [0, 1, 2, 3, 3]])
    assert probes.earlier_mentions(tokens, torch.tensor([2, 4])).tolist() == [1, 1]
    with pytest.raises(ValueError, match="one position per row"):
        probes.earlier_mentions(tokens, torch.tensor([2]))
