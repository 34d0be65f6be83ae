import dataclasses
import math

import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from interp_utils import activations, loading, sae, sae_metrics, superposition
from interp_utils.dictionaries.training import clip_grad_norm_, model_unit_weights

HOOK = "blocks.2.hook_resid_pre"


def identity_sae(d: int) -> sae.SAE:
    """A ReLU SAE with 2d latents that reconstructs exactly: latents relu(x) and relu(-x), decoder [I; -I]."""
    model = sae.SAE(sae.SAEConfig(d_in=d, d_sae=2 * d, architecture="relu"))
    with torch.no_grad():
        eye = torch.eye(d)
        model.W_enc.copy_(torch.cat([eye, -eye], dim=1))
        model.W_dec.copy_(torch.cat([eye, -eye], dim=0))
        model.b_enc.zero_()
        model.b_dec.zero_()
    return model


def test_topk_keeps_k_and_relu_is_non_negative():
    torch.manual_seed(0)
    topk = sae.SAE(sae.SAEConfig(d_in=8, d_sae=32, k=3))
    f = topk.encode(torch.randn(50, 8))
    assert ((f > 0).sum(-1) <= 3).all() and (f >= 0).all()


def test_bad_configs_and_shapes_are_explained():
    with pytest.raises(ValueError, match="architecture must be 'topk' or 'relu'"):
        sae.SAEConfig(d_in=4, d_sae=8, architecture="gated")
    with pytest.raises(ValueError, match="k must be between 1 and d_sae=8"):
        sae.SAEConfig(d_in=4, d_sae=8, k=9)
    model = sae.SAE(sae.SAEConfig(d_in=4, d_sae=8, k=2))
    with pytest.raises(ValueError, match="The SAE's input must end in dimension 4"):
        model.encode(torch.randn(3, 5))
    with pytest.raises(ValueError, match=r"input is on meta but the SAE is on cpu: move the SAE"):  # as cuda vs cpu
        model.encode(torch.empty(3, 4, device="meta"))
    with pytest.raises(ValueError, match="fewer than one batch"):
        sae.train_sae(model, torch.randn(10, 4), n_tokens=100, batch_size=64, progress=False)
    with pytest.raises(ValueError, match=r"\[batch, d_in\] activations"):
        sae.train_sae(model, iter([torch.randn(8, 2, 4)]), n_tokens=8, progress=False)
    with pytest.raises(ValueError, match=r"\[n, d\] activations or \[n, 2, d\]"):
        sae_metrics.evaluate_sae(model, torch.randn(3, 3, 4))
    with pytest.raises(ValueError, match="must match"):
        sae_metrics.feature_recovery(torch.randn(5, 4), torch.randn(3, 6))


def test_evaluate_on_an_exact_reconstruction():
    data = torch.randn(500, 6) + 2.0
    result = sae_metrics.evaluate_sae(identity_sae(6), data)
    assert result["explained_variance"] == pytest.approx(1.0, abs=1e-6)
    assert result["nmse"] == pytest.approx(0.0, abs=1e-9)
    assert result["shrinkage"] == pytest.approx(1.0, abs=1e-6)
    assert 5.0 < result["l0"] <= 6.0  # each coordinate fires exactly one of its two latents (unless it is 0)
    assert result["dead_fraction"] == 0.0


def test_shrinkage_sees_a_reconstruction_that_is_too_short():
    model = identity_sae(4)
    with torch.no_grad():
        model.W_dec.mul_(0.5)  # every reconstruction at half length, around b_dec = 0
    data = torch.randn(400, 4)
    result = sae_metrics.evaluate_sae(model, data)
    assert result["shrinkage"] == pytest.approx(2.0, rel=0.05)


def test_decoder_rows_stay_unit_norm_and_dead_latents_are_counted():
    """On rank-1 data a TopK SAE with k=1 can only ever fire a couple of latents: the rest must show as dead."""
    torch.manual_seed(0)
    model = sae.SAE(sae.SAEConfig(d_in=8, d_sae=64, k=1, dead_tokens=512))
    data = torch.randn(4096, 1) * torch.nn.functional.normalize(torch.randn(1, 8), dim=-1)
    log = sae.train_sae(model, data, n_tokens=16_384, batch_size=256, log_every=4, progress=False)
    assert torch.allclose(model.W_dec.norm(dim=1), torch.ones(64), atol=1e-5)
    assert log.history["dead_fraction"][-1] > 0.5
    assert log.tokens == 16_384 and log.tokens_per_s > 0


def test_resampling_points_dead_latents_at_badly_reconstructed_inputs():
    torch.manual_seed(0)
    model = sae.SAE(sae.SAEConfig(d_in=4, d_sae=6, architecture="relu"))
    opt = torch.optim.Adam(model.parameters())
    x = torch.randn(32, 4)
    out = model.losses(x)
    out["loss"].backward()
    opt.step()
    err = torch.zeros(32, 4)
    err[7] = 1.0  # only input 7 is reconstructed badly, so every dead latent is drawn towards it
    dead = torch.tensor([True, False, True, False, False, False])
    before = model.W_dec[~dead].clone()
    assert sae.resample_dead_(model, dead, x, None, err, opt) == 2
    target = torch.nn.functional.normalize(x[7] - model.b_dec.detach(), dim=-1)
    assert torch.allclose(model.W_dec[dead], target.expand(2, 4), atol=1e-5)
    assert torch.equal(model.W_dec[~dead], before)
    assert (opt.state[model.W_dec]["exp_avg"][dead] == 0).all() and (model.b_enc[dead] == 0).all()


@pytest.mark.parametrize("architecture", ["topk", "relu"])
def test_sae_recovers_the_toy_models_true_features(architecture):
    """Ground truth: 40 sparse features squeezed into 10 dimensions by a toy model of notebook 01."""
    torch.manual_seed(0)
    toy = superposition.ToyModel(superposition.ToyConfig(n_features=40, n_hidden=10, n_instances=1), 0.05)
    superposition.train_toy_model(toy, steps=3000, lr=3e-3, progress=False)
    data, true = superposition.hidden_dataset(toy, 100_000)
    assert data.shape == (100_000, 10) and true.shape == (40, 10)
    kwargs = {"k": 4} if architecture == "topk" else {"l1_coeff": 1.0}
    model = sae.SAE(sae.SAEConfig(d_in=10, d_sae=80, architecture=architecture, **kwargs))
    sae.train_sae(
        model,
        data,
        n_tokens=2_000_000 if architecture == "topk" else 4_000_000,
        batch_size=1024,
        lr=3e-3,
        progress=False,
    )
    recovery = sae_metrics.feature_recovery(model.W_dec.detach(), true)
    assert recovery["mmcs"] > 0.95 and recovery["matched_fraction"] > 0.9


def test_the_two_l1_recipes():
    """Bricken et al.: plain L1, unit-norm rows, resampling. April 2024 update: L1 weighted by row norms, rows free."""
    torch.manual_seed(0)
    data = torch.randn(4096, 8) * torch.linspace(0.5, 2.0, 8)
    bricken = sae.SAE(sae.SAEConfig(d_in=8, d_sae=32, architecture="relu", l1_coeff=1.0))
    april = sae.SAE(sae.SAEConfig(d_in=8, d_sae=32, architecture="relu", l1_coeff=1.0, recipe="april2024"))
    assert bricken.cfg.normalise_decoder and not april.cfg.normalise_decoder and april.cfg.weight_l1_by_norm
    x = data[:64]
    for model in (bricken, april):
        out = model.losses(x)
        f, norms = out["acts"], model.W_dec.norm(dim=1)
        weighted = (f * norms).sum(-1).mean()
        assert torch.allclose(out["l1"], weighted if model is april else f.sum(-1).mean())
    assert torch.allclose(april.W_dec.norm(dim=1), torch.full((32,), 0.1))  # unconstrained rows start short
    sae.train_sae(bricken, data, 20_000, batch_size=256, lr=1e-2, progress=False, resample_at=(0.5,))
    log_a = sae.train_sae(april, data, 20_000, batch_size=256, lr=1e-2, progress=False, resample_at=(0.5,))
    assert torch.allclose(bricken.W_dec.norm(dim=1), torch.ones(32), atol=1e-5)
    assert not torch.allclose(april.W_dec.norm(dim=1), torch.ones(32), atol=1e-2)
    assert log_a.resampled == 0  # the update does not resample
    with pytest.raises(ValueError, match="recipe must be"):
        sae.SAEConfig(d_in=8, d_sae=32, recipe="2023")


def test_a_learners_step_trains_exactly_like_the_built_in_one():
    torch.manual_seed(0)
    data = torch.randn(2048, 6)
    runs = []
    for step_fn in (None, lambda m, opt, x, dead, scale: sae.sae_train_step(m, opt, x, dead, scale)):
        torch.manual_seed(1)
        model = sae.SAE(sae.SAEConfig(d_in=6, d_sae=24, architecture="relu", l1_coeff=0.5))
        gen = iter(sae.tensor_batches(data, 128, torch.Generator().manual_seed(2)))
        sae.train_sae(model, gen, 8_000, batch_size=128, progress=False, step_fn=step_fn)
        runs.append(model.W_dec.detach().clone())
    assert torch.equal(runs[0], runs[1])
    transcoder = sae.SAE(sae.SAEConfig(d_in=6, d_sae=24, d_out=6, k=2))
    with pytest.raises(ValueError, match="built-in step"):
        sae.train_sae(
            transcoder, torch.randn(256, 2, 6), 512, batch_size=128, progress=False, step_fn=sae.sae_train_step
        )


def test_max_grad_norm_clips_before_each_step_in_the_models_units():
    """The built-in clip against a step that clips by hand before opt.step, its norm weighted as in the model's units
    (matrices in_scale**2, biases in_scale): the same weights after training. Weighted as in the module's own units
    (all 1), the same by-hand clip ends elsewhere, so the comparison can fail. A non-positive limit is refused."""
    torch.manual_seed(0)
    data = torch.randn(1024, 6) * 10

    def by_hand(model_units):
        def step(m, opt, x, dead, scale):
            out = m.losses(x, dead=dead, l1_scale=scale)
            opt.zero_grad(set_to_none=True)
            out["loss"].backward()
            m.remove_parallel_grads_()
            s = m.in_scale.item() if model_units else 1.0  # an autoencoder: its in and out scales are equal
            norm = sum((w.grad.norm() * (s**2 if w.dim() == 2 else s)) ** 2 for w in m.parameters()) ** 0.5
            for w in m.parameters():
                w.grad *= min(1.0, 0.5 / (norm.item() + 1e-6))
            opt.step()
            m.normalise_decoder_()
            return out

        return step

    runs = []
    for step_fn, clip in ((None, 0.5), (by_hand(True), None), (by_hand(False), None)):
        torch.manual_seed(1)
        model = sae.SAE(sae.SAEConfig(d_in=6, d_sae=24, architecture="relu", l1_coeff=0.5))
        gen = iter(sae.tensor_batches(data, 128, torch.Generator().manual_seed(2)))
        sae.train_sae(model, gen, 1024, batch_size=128, lr=1e-2, progress=False, step_fn=step_fn, max_grad_norm=clip)
        runs.append(model.W_enc.detach().clone())
    torch.testing.assert_close(runs[0], runs[1])
    assert (runs[0] - runs[2]).abs().max() > 1e-4  # ten times assert_close's tolerance
    with pytest.raises(ValueError, match="max_grad_norm must be positive"):
        sae.train_sae(model, data, 256, batch_size=128, progress=False, max_grad_norm=0.0)


@pytest.mark.parametrize("architecture", ["topk", "relu"])
def test_model_unit_weights_convert_a_transcoders_gradient(architecture):
    """A transcoder reads x / in_scale and predicts y / out_scale (in_scale != out_scale). Its twin in the model's
    units (scales 1; W_enc * out/in, biases * out, the L1 coefficient * out) computes the same function with a loss
    out_scale**2 times larger; the weighted norm of the transcoder's gradient is the twin's plain one."""
    torch.manual_seed(0)
    x, y = torch.randn(256, 6) * 3, torch.randn(256, 5) * 0.5 + 0.2
    cfg = sae.SAEConfig(d_in=6, d_sae=24, d_out=5, architecture=architecture, k=3, l1_coeff=0.5)
    ours = sae.SAE(cfg)
    ours.init_from_data(x, y)
    a, b = ours.in_scale.item(), ours.out_scale.item()
    assert abs(a / b - 1) > 0.5
    twin = sae.SAE(dataclasses.replace(cfg, l1_coeff=cfg.l1_coeff * b))
    with torch.no_grad():
        ours.b_enc.normal_(0, 0.1)
        for name, weight in twin.named_parameters():
            weight.copy_(getattr(ours, name) * {"W_enc": b / a, "W_dec": 1.0}.get(name, b))
    torch.testing.assert_close(twin(x), ours(x))
    loss, twin_loss = ours.losses(x, y)["loss"], twin.losses(x, y)["loss"]
    assert twin_loss.item() == pytest.approx(b**2 * loss.item(), rel=1e-5)
    loss.backward()
    twin_loss.backward()
    norm = clip_grad_norm_(model_unit_weights(ours, a, b), math.inf).item()
    assert norm == pytest.approx(clip_grad_norm_([(w, 1.0) for w in twin.parameters()], math.inf).item(), rel=1e-5)


def test_ce_loss_recovered_is_one_for_an_exact_reconstruction(bundled_model):
    tokens = next(activations.token_batches(bundled_model, 8, n_ctx=32, seed=1))
    result = sae_metrics.ce_loss_recovered(
        bundled_model, identity_sae(bundled_model.cfg.d_model).to(bundled_model.cfg.device), HOOK, tokens
    )
    assert result["spliced"] == pytest.approx(result["clean"], abs=1e-4)
    assert result["recovered"] == pytest.approx(1.0, abs=1e-3)
    assert result["zero_ablated"] > result["clean"] + 1.0
    baselines = sae_metrics.loss_baselines(bundled_model, HOOK, tokens)
    assert (
        sae_metrics.ce_loss_recovered(
            bundled_model,
            identity_sae(bundled_model.cfg.d_model).to(bundled_model.cfg.device),
            HOOK,
            tokens,
            baselines=baselines,
        )
        == result
    )


def test_metrics_take_a_saelens_sae(bundled_model):
    """The notebook evaluates a published SAELens SAE with the same code as its own."""
    from sae_lens import StandardSAE, StandardSAEConfig

    lens = StandardSAE(StandardSAEConfig(d_in=bundled_model.cfg.d_model, d_sae=256)).to(bundled_model.cfg.device)
    acts = activations.collect(bundled_model, HOOK, next(activations.token_batches(bundled_model, 4, n_ctx=32)))
    acts = acts.to(bundled_model.cfg.device)
    result = sae_metrics.evaluate_sae(lens, acts)
    x_hat = lens.decode(lens.encode(acts))
    # Gao et al.'s normalised MSE: the error over that of predicting the mean; beside it, the error over ||x||^2
    assert result["nmse"] == pytest.approx(sae_metrics.normalised_mse(acts, x_hat), rel=1e-4)
    assert result["nmse"] == pytest.approx(1 - sae_metrics.explained_variance(acts, x_hat), rel=1e-4)
    expected = ((acts - x_hat).pow(2).sum() / acts.pow(2).sum()).item()
    assert result["error_vs_norm"] == pytest.approx(expected, rel=1e-4) and expected < result["nmse"]
    tokens = next(activations.token_batches(bundled_model, 4, n_ctx=32, seed=2))
    assert set(sae_metrics.ce_loss_recovered(bundled_model, lens, HOOK, tokens)) == {
        "clean",
        "spliced",
        "zero_ablated",
        "mean_ablated",
        "recovered",
        "recovered_vs_mean",
        "ce_delta",
    }


def test_a_reinitialised_decoder_fails_lesson_04s_reconstruction_band(bundled_model):
    """The mutation test of lesson 04's reconstruction row: an SAE that reconstructs exactly is inside the band the
    notebook judges with (the share of the loss recovered against mean-ablation), the same SAE with its decoder
    re-initialised is outside it, so the row disagrees; and so does a briefly trained SAE's re-initialised copy."""
    from interp_utils.core.report import judge

    device = bundled_model.cfg.device
    tokens = next(activations.token_batches(bundled_model, 8, n_ctx=32, seed=1))
    baselines = sae_metrics.loss_baselines(bundled_model, HOOK, tokens)
    assert baselines["clean"] + 1.0 < baselines["mean_ablated"]  # (on this model about as bad as zero-ablation)
    exact = identity_sae(bundled_model.cfg.d_model).to(device)

    def share(model: sae.SAE) -> float:
        return sae_metrics.ce_loss_recovered(bundled_model, model, HOOK, tokens, baselines=baselines)[
            "recovered_vs_mean"
        ]

    band = sae_metrics.RECONSTRUCTION_BAND
    control = sae_metrics.reinitialised_decoder(exact, seed=0)
    assert share(exact) == pytest.approx(1.0, abs=1e-3) and share(exact) in band
    assert share(control) not in band and not judge(share(control), band, share(exact))
    assert torch.equal(control.W_enc, exact.W_enc) and not torch.equal(control.W_dec, exact.W_dec)
    assert torch.allclose(control.W_dec.norm(dim=1), exact.W_dec.norm(dim=1))
    torch.manual_seed(0)
    trained = sae.SAE(sae.SAEConfig(d_in=bundled_model.cfg.d_model, d_sae=4 * bundled_model.cfg.d_model, k=16), device)
    acts = activations.collect(
        bundled_model, HOOK, next(activations.token_batches(bundled_model, 32, n_ctx=64, seed=3))
    )
    sae.train_sae(trained, acts, 100_000, batch_size=512, lr=1e-3, progress=False)
    reinitialised = share(sae_metrics.reinitialised_decoder(trained, seed=0))
    assert reinitialised not in band and reinitialised < share(trained)


def test_latents_contexts_and_logit_effects(bundled_model):
    torch.manual_seed(0)
    model = sae.SAE(sae.SAEConfig(d_in=bundled_model.cfg.d_model, d_sae=64, k=4), device=bundled_model.W_E.device)
    tokens = next(activations.token_batches(bundled_model, 4, n_ctx=32))
    acts = sae_metrics.latent_activations(bundled_model, model, HOOK, tokens)
    assert acts.shape == (4, 32, 64) and (acts[:, 0] == 0).all() and ((acts > 0).sum(-1) <= 4).all()
    contexts = sae_metrics.top_contexts(acts[..., 0], k=3, before=5, after=2)
    values = [value for *_, value in contexts]
    assert values == sorted(values, reverse=True) and all(s.stop - s.start <= 8 for _, _, s, _ in contexts)
    effects = sae_metrics.logit_effects(bundled_model, model, 0, k=5)
    assert len(effects["promotes"]) == 5 and effects["promotes"][0][1] >= effects["suppresses"][0][1]


def test_buffer_serves_shuffled_batches_of_fresh_activations(bundled_model):
    tokens = activations.token_batches(bundled_model, 8, n_ctx=32)
    buffer = activations.ActivationBuffer(bundled_model, HOOK, tokens, batch_size=64, pool_tokens=256)
    batches = [next(buffer) for _ in range(6)]  # past one refill
    assert all(b.shape == (64, bundled_model.cfg.d_model) for b in batches)
    assert buffer.tokens_collected >= 256 + 128
    pairs = activations.ActivationBuffer(
        bundled_model, ["blocks.1.ln2.hook_normalized", "blocks.1.hook_mlp_out"], tokens, batch_size=32, pool_tokens=64
    )
    assert next(pairs).shape == (32, 2, bundled_model.cfg.d_model)
    with pytest.raises(ValueError, match="at least twice batch_size"):
        activations.ActivationBuffer(bundled_model, HOOK, tokens, batch_size=64, pool_tokens=100)


def test_collection_errors_are_explained(bundled_model):
    with pytest.raises(ValueError, match="Unknown hook.*blocks.2.hook_resid_pre"):
        activations.collect(bundled_model, "blocks.9.resid", torch.zeros(1, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="longer than the model's context"):
        next(activations.token_batches(bundled_model, 2, n_ctx=4096))


def _tiny_gpt2_named_model() -> HookedTransformer:
    cfg = HookedTransformerConfig(
        n_layers=1, d_model=16, n_heads=2, d_head=8, n_ctx=16, d_vocab=50, act_fn="relu", model_name="gpt2"
    )
    return HookedTransformer(cfg)


def test_a_hub_model_offline_gets_a_clear_error(monkeypatch):
    monkeypatch.setattr(activations, "hub_reachable", lambda *a, **k: False)
    with pytest.raises(ConnectionError, match="hub is unreachable.*MODEL='bundled'"):
        next(activations.token_batches(_tiny_gpt2_named_model(), 2))


def test_a_hub_model_packs_streamed_documents_into_rows(monkeypatch):
    """The online path, with the data set and tokenizer stubbed: documents packed after BOS, rows of n_ctx."""
    import datasets

    class Stream(list):
        def shuffle(self, seed, buffer_size):
            return self

    class Tokenizer:
        bos_token_id = 0

        def __call__(self, text):
            return {"input_ids": [len(word) for word in text.split()]}

    model = _tiny_gpt2_named_model()
    model.tokenizer = Tokenizer()
    monkeypatch.setattr(activations, "hub_reachable", lambda *a, **k: True)
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: Stream([{"text": "ab cde f " * 10}] * 20))
    batch = next(activations.token_batches(model, 3, n_ctx=8))
    assert batch.shape == (3, 8) and (batch[:, 0] == 0).all()
    assert loading.is_bundled(model) is False and "hub" in activations.describe_text(model)
