"""Notebook 04's checks pass the reference answers and reject plausible wrong ones with the message meant for them."""

import pytest
import torch

from interp_utils import hooks, training
from interp_utils.course.checks import sparse_autoencoders as checks
from interp_utils.dictionaries.sae import resample_dead_, tensor_batches
from interp_utils.dictionaries.sae_metrics import ce_loss_recovered, evaluate_sae


def _topk(pre, k):
    values, indices = pre.topk(k, dim=-1)
    return torch.zeros_like(pre).scatter(-1, indices, torch.relu(values))


def _losses(sae, x, dead=None, l1_scale=1.0, bias=True, scale=True, weighted=True, dead_only=True, detach=True):
    """The reference SAE losses, with one of the usual mistakes switched on by a flag."""
    cfg = sae.cfg
    x_in, y = (x / sae.in_scale, x / sae.out_scale) if scale else (x, x)
    pre = (x_in - (sae.b_dec if bias else 0)) @ sae.W_enc + sae.b_enc
    f = torch.relu(pre) if cfg.architecture == "relu" else _topk(pre, cfg.k)
    err = y - (f @ sae.W_dec + sae.b_dec)
    out = {"mse": err.pow(2).sum(-1).mean(), "acts": f, "err": err}
    if cfg.architecture == "relu":
        out["l1"] = (f * sae.W_dec.norm(dim=1) if cfg.weight_l1_by_norm and weighted else f).sum(-1).mean()
        out["loss"] = out["mse"] + l1_scale * cfg.l1_coeff * out["l1"]
        return out
    out["aux"] = torch.zeros(())
    if dead is not None and dead.any():
        mask = dead if dead_only else torch.ones_like(dead)
        f_dead = _topk(pre[:, mask], min(cfg.aux_k, int(mask.sum())))
        out["aux"] = ((err.detach() if detach else err) - f_dead @ sae.W_dec[mask]).pow(2).sum(-1).mean()
    out["loss"] = out["mse"] + cfg.aux_coeff * out["aux"]
    return out


def test_sae_losses_check():
    checks.check_sae_losses(_losses)
    for wrong, message in (
        (dict(bias=False), "pre-encoder bias"),
        (dict(scale=False), "in_scale"),
        (dict(weighted=False), "decoder row's norm"),
        (dict(dead_only=False), "Only dead latents"),
        (dict(detach=False), "detach err"),
    ):
        with pytest.raises(AssertionError, match=message):
            checks.check_sae_losses(lambda *a, wrong=wrong: _losses(*a, **wrong))
    with pytest.raises(AssertionError, match="both l1_scale and cfg.l1_coeff"):  # the warm-up's scale left out
        checks.check_sae_losses(lambda sae, x, dead, l1_scale: _losses(sae, x, dead, 1.0))


@torch.no_grad()
def _resample(sae, dead, x, err, opt=None, generator=None, uniform=False, scale=0.2, reset=True, replace=True):
    n = int(dead.sum())
    probs = torch.ones(len(x)) if uniform else err.pow(2).sum(-1)
    replacement = replace and n > int((probs > 0).sum())
    picks = torch.multinomial(probs / probs.sum(), n, replacement=replacement, generator=generator)
    direction = x[picks] / sae.in_scale - sae.b_dec
    direction = direction / direction.norm(dim=-1, keepdim=True)
    alive = sae.W_enc[:, ~dead].norm(dim=0).mean()
    sae.W_dec[dead] = direction
    sae.W_enc[:, dead] = direction.T * scale * alive
    sae.b_enc[dead] = 0.0
    if reset and opt is not None:
        for param, index in ((sae.W_dec, (dead,)), (sae.W_enc, (slice(None), dead)), (sae.b_enc, (dead,))):
            for moment in opt.state.get(param, {}).values():
                if torch.is_tensor(moment) and moment.shape == param.shape:
                    moment[index] = 0.0
    return n


def test_resample_check():
    checks.check_resample(_resample)
    checks.check_resample(lambda sae, dead, x, err, opt, g: resample_dead_(sae, dead, x, None, err, opt, g))
    for wrong, message in (
        (dict(uniform=True), "proportional to each input's squared error"),
        (dict(scale=1.0), "0.2 times the mean norm"),
        (dict(reset=False), "Adam's state"),
        (dict(replace=False), "with replacement when fewer"),
    ):
        with pytest.raises(AssertionError, match=message):
            checks.check_resample(lambda *a, wrong=wrong: _resample(*a, **wrong))
    with pytest.raises(AssertionError, match="number of latents resampled"):
        checks.check_resample(lambda *a: _resample(*a) and None)


def _train(sae, data, n_tokens, batch_size, lr, decay=True, renorm="recipe", tokens=True, resample=True):
    """The reference training loop (as in the notebook), with one of the usual mistakes switched on by a flag."""
    batches = tensor_batches(data, batch_size)
    x = next(batches)
    sae.init_from_data(x)
    steps = n_tokens // batch_size
    window = min(sae.cfg.dead_tokens, max(1, n_tokens // 4))
    bricken = sae.cfg.architecture == "relu" and sae.cfg.recipe == "bricken2023"
    resample_steps = {int(steps * f) for f in (0.25, 0.5)} if bricken and resample else set()
    normalise = {"recipe": sae.cfg.normalise_decoder, "never": False, "always": True}[renorm]
    opt = torch.optim.Adam(sae.parameters(), lr=lr)
    since, resampled = torch.zeros(sae.cfg.d_sae), 0
    for step in range(steps):
        dead = since >= window
        factor, l1_scale = training.schedule(step, steps, 0.05, 0.2)
        for group in opt.param_groups:
            group["lr"] = lr * (factor if decay else 1.0)
        out = sae.losses(x, dead=dead, l1_scale=l1_scale)
        opt.zero_grad()
        out["loss"].backward()
        if normalise:
            sae.remove_parallel_grads_()
        opt.step()
        with torch.no_grad():
            if normalise:
                sae.normalise_decoder_()
            since = torch.where((out["acts"] > 0).any(0), 0.0, since + (len(x) if tokens else 1))
            if step in resample_steps and dead.any():
                resampled += resample_dead_(sae, dead, x, None, out["err"].detach(), opt)
                since[dead] = 0
        if step < steps - 1:
            x = next(batches)
    return resampled


def test_train_check():
    checks.check_train(_train)
    for wrong, message in (
        (dict(renorm="never"), "unit norm"),
        (dict(decay=False), "TopK: the weights after 80 steps differ"),  # no learning-rate decay
        (dict(renorm="always"), "April 2024 recipe"),
        (dict(tokens=False), "count tokens"),  # steps counted, not tokens: nothing is ever dead
        (dict(resample=False), "expected 4 latents resampled, got 0"),
    ):
        with pytest.raises(AssertionError, match=message):
            checks.check_train(lambda *a, wrong=wrong: _train(*a, **wrong))


def _evaluate(sae, data, batch_size=4096, wrong=None):
    """evaluate_sae, with one of the usual mistakes made to one of its keys."""
    out = evaluate_sae(sae, data, batch_size)
    acts = sae.encode(data).detach()
    x_hat = sae.decode(acts).detach()
    if wrong == "l0":  # the share of active entries, not the count per token
        out["l0"] = (acts > 0).float().mean().item()
    elif wrong == "ev":  # against predicting zero
        out["explained_variance"] = 1 - ((data - x_hat).pow(2).sum() / data.pow(2).sum()).item()
    elif wrong == "dead":  # the share of zero activations
        out["dead_fraction"] = (acts == 0).float().mean().item()
    elif wrong == "chunks":  # each chunk's ratio averaged, unweighted
        parts = [1 - (c - sae.decode(sae.encode(c))).pow(2).sum() / (c - c.mean(0)).pow(2).sum() for c in data.split(3)]
        out["explained_variance"] = torch.stack(parts).mean().item()
    elif wrong == "shrinkage":  # upside down
        out["shrinkage"] = 1 / out["shrinkage"]
    return out


def test_evaluate_check():
    checks.check_evaluate(_evaluate)
    for wrong, message in (
        ("l0", "l0 should be 1.2500"),
        ("ev", "explained_variance should be"),
        ("dead", "never fire on any token"),
        ("chunks", "Sum over every chunk first"),
        ("shrinkage", "shrinkage should be"),
    ):
        with pytest.raises(AssertionError, match=message):
            checks.check_evaluate(lambda sae, data, bs, wrong=wrong: _evaluate(sae, data, bs, wrong))


def _loss_recovered(model, sae, hook_name, tokens, wrong=None):
    """The reference loss recovered, with one of the usual mistakes."""
    out = ce_loss_recovered(model, sae, hook_name, tokens)
    start = 0 if wrong in ("splice", "zero") else 1

    def splice(act, hook):
        act = act.clone()
        act[:, start:] = sae(act[:, start:]) if wrong == "splice" else 0.0
        return act

    if wrong in ("splice", "zero"):
        out["spliced" if wrong == "splice" else "zero_ablated"] = hooks.mean_loss(model, tokens, [(hook_name, splice)])
    elif wrong == "mean":  # BOS included in the mean
        _, cache = model.run_with_cache(tokens, names_filter=hook_name)
        mean = cache[hook_name].flatten(0, 1).mean(0)

        def mean_ablate(act, hook):
            act = act.clone()
            act[:, 1:] = mean
            return act

        out["mean_ablated"] = hooks.mean_loss(model, tokens, [(hook_name, mean_ablate)])
    elif wrong == "ratio":  # upside down
        out["recovered"] = 1 / out["recovered"]
    return out


def test_loss_recovered_check(bundled_model):
    checks.check_loss_recovered(lambda *a: ce_loss_recovered(*a), bundled_model)
    for wrong, message in (
        ("splice", "spliced: .* but BOS"),
        ("zero", "zero_ablated: .* but the first"),
        ("mean", "except the BOS positions"),
        ("ratio", "recovered: .*zero_ablated - spliced"),
    ):
        with pytest.raises(AssertionError, match=message):
            checks.check_loss_recovered(lambda *a, wrong=wrong: _loss_recovered(*a, wrong=wrong), bundled_model)


def test_decoder_schedule_and_logit_checks(bundled_model):
    def remove(W, grad):
        unit = W / W.norm(dim=1, keepdim=True)
        return grad - (grad * unit).sum(1, keepdim=True) * unit

    def renorm(W):
        return W / W.norm(dim=1, keepdim=True)

    checks.check_decoder_constraint(remove, renorm)
    with pytest.raises(AssertionError, match="unit"):  # the raw row, not the unit row
        checks.check_decoder_constraint(lambda W, g: g - (g * W).sum(1, keepdim=True) * W, renorm)
    with pytest.raises(AssertionError, match="row \\(not column\\)"):
        checks.check_decoder_constraint(remove, lambda W: W / W.norm(dim=0, keepdim=True))
    with pytest.raises(AssertionError, match="several rows"):  # the whole matrix's norm, right for one row only
        checks.check_decoder_constraint(
            lambda W, g: g - (g * (W / W.norm())).sum(1, keepdim=True) * W / W.norm(), renorm
        )

    checks.check_schedule(training.schedule)
    with pytest.raises(AssertionError, match="capped at 1"):
        checks.check_schedule(lambda s, n, w, d: (training.schedule(s, n, w, d)[0], s / (w * n)))
    with pytest.raises(AssertionError, match="1 until step 80"):  # decay over the whole run
        checks.check_schedule(lambda s, n, w, d: ((n - s) / n, training.schedule(s, n, w, d)[1]))
    with pytest.raises(AssertionError, match="At step 90"):  # off by one: decays to 1/21 of a step early
        checks.check_schedule(lambda s, n, w, d: (min(1.0, (n - s + 1) / 21), training.schedule(s, n, w, d)[1]))

    def effects(model, dictionary, latent, k):
        top = (dictionary.W_dec[latent] @ model.W_U).topk(k)
        return top.values, top.indices

    checks.check_logit_effects(effects, bundled_model)
    with pytest.raises(AssertionError, match="decoder row"):  # the encoder column
        checks.check_logit_effects(lambda m, d, latent, k: tuple((d.W_enc[:, latent] @ m.W_U).topk(k)), bundled_model)
    with pytest.raises(AssertionError, match="decoder row"):  # the tokens it suppresses most
        checks.check_logit_effects(
            lambda m, d, latent, k: tuple((d.W_dec[latent] @ m.W_U).topk(k, largest=False)), bundled_model
        )
    with pytest.raises(AssertionError, match="Right tokens, wrong values"):
        checks.check_logit_effects(
            lambda m, d, latent, k: (effects(m, d, latent, k)[0] * 2, effects(m, d, latent, k)[1]), bundled_model
        )
