"""Notebook 04's checks pass the reference answers and reject plausible wrong ones with the message meant for them."""

import pytest
import torch

from interp_utils import hooks, sae, sae_metrics, training
from interp_utils.course.checks import sparse_autoencoders as checks


def forward(x, W_enc, b_enc, W_dec, b_dec, activation):
    f = activation((x - b_dec) @ W_enc + b_enc)
    return f, f @ W_dec + b_dec


def test_forward_and_loss_checks():
    checks.check_sae_forward(forward)
    with pytest.raises(AssertionError, match="pre-encoder bias"):
        checks.check_sae_forward(lambda x, We, be, Wd, bd, act: forward(x + bd, We, be, Wd, bd, act))
    with pytest.raises(AssertionError, match="x_hat should be"):
        checks.check_sae_forward(lambda x, We, be, Wd, bd, act: (act((x - bd) @ We + be), act((x - bd) @ We + be) @ Wd))

    def l1_loss(x, x_hat, f, W_dec, coeff, weighted):
        penalty = (f * W_dec.norm(dim=1) if weighted else f).sum(-1).mean()
        return (x - x_hat).pow(2).sum(-1).mean() + coeff * penalty

    checks.check_l1_loss(l1_loss)
    with pytest.raises(AssertionError, match="plain sum_i f_i"):  # always weighted
        checks.check_l1_loss(lambda x, xh, f, W, c, weighted: l1_loss(x, xh, f, W, c, True))
    with pytest.raises(AssertionError, match="summed over dimensions"):
        checks.check_l1_loss(lambda x, xh, f, W, c, w: (x - xh).pow(2).mean() + c * f.sum(-1).mean())


def test_decoder_and_dead_latent_checks():
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

    def aux(pre, err, dead, W_dec, k):
        values, indices = pre[:, dead].topk(min(k, int(dead.sum())), dim=-1)
        f = torch.zeros_like(pre[:, dead]).scatter(-1, indices, torch.relu(values))
        return (err - f @ W_dec[dead]).pow(2).sum(-1).mean()

    checks.check_aux_k_loss(aux)
    with pytest.raises(AssertionError, match="Only dead latents"):  # every latent takes part
        checks.check_aux_k_loss(lambda pre, err, dead, W, k: aux(pre, err, torch.ones_like(dead), W, k))
    with pytest.raises(AssertionError, match="through a ReLU"):

        def no_relu(pre, err, dead, W_dec, k):
            values, indices = pre[:, dead].topk(k, dim=-1)
            return (
                (err - torch.zeros_like(pre[:, dead]).scatter(-1, indices, values) @ W_dec[dead]).pow(2).sum(-1).mean()
            )

        checks.check_aux_k_loss(no_relu)

    checks.check_update_since_fired(training.update_since_fired)
    with pytest.raises(AssertionError, match="one batch"):  # one step, not one batch of tokens
        checks.check_update_since_fired(lambda since, acts: torch.where((acts > 0).any(0), 0.0, since + 1))
    with pytest.raises(AssertionError, match="goes back"):
        checks.check_update_since_fired(lambda since, acts: since + len(acts))


def _resample(model, dead, x, err, generator, uniform=False, scale=0.2):
    probs = torch.ones(len(x)) if uniform else err.pow(2).sum(-1)
    picks = torch.multinomial(probs / probs.sum(), int(dead.sum()), replacement=False, generator=generator)
    direction = x[picks] / model.in_scale - model.b_dec
    direction = direction / direction.norm(dim=-1, keepdim=True)
    alive = model.W_enc[:, ~dead].norm(dim=0).mean()
    model.W_dec[dead] = direction
    model.W_enc[:, dead] = direction.T * scale * alive
    model.b_enc[dead] = 0.0


def test_resampling_schedule_and_step_checks():
    checks.check_resample(_resample)
    with pytest.raises(AssertionError, match="proportional to each input's squared error"):
        checks.check_resample(lambda *a: _resample(*a, uniform=True))
    with pytest.raises(AssertionError, match="0.2 times the mean norm"):
        checks.check_resample(lambda *a: _resample(*a, scale=1.0))

    checks.check_schedule(training.schedule)
    with pytest.raises(AssertionError, match="capped at 1"):
        checks.check_schedule(lambda s, n, w, d: (training.schedule(s, n, w, d)[0], s / (w * n)))
    with pytest.raises(AssertionError, match="1 until step 80"):  # decay over the whole run
        checks.check_schedule(lambda s, n, w, d: ((n - s) / n, training.schedule(s, n, w, d)[1]))

    def step(model, opt, x, dead, l1_scale):
        return sae.sae_train_step(model, opt, x, dead, l1_scale)

    checks.check_sae_train_step(step)

    def step_without(project=True, renorm=True):  # the training step with one of its two decoder fixes left out
        def step(model, opt, x, dead, l1_scale):
            out = model.losses(x, dead=dead, l1_scale=l1_scale)
            opt.zero_grad()
            out["loss"].backward()
            if project:
                model.remove_parallel_grads_()
            opt.step()
            if renorm:
                model.normalise_decoder_()
            return out

        return step

    with pytest.raises(AssertionError, match="remove the gradient along each decoder row"):
        checks.check_sae_train_step(step_without(project=False))
    with pytest.raises(AssertionError, match="unit norm again"):
        checks.check_sae_train_step(step_without(renorm=False))


def test_metric_checks(bundled_model):
    checks.check_l0(sae_metrics.l0)
    with pytest.raises(AssertionError, match="per token"):
        checks.check_l0(lambda acts: (acts > 0).float().mean().item())
    checks.check_normalised_mse(sae_metrics.normalised_mse)
    with pytest.raises(AssertionError, match="not Gao et al.'s"):  # the old definition: against zero
        checks.check_normalised_mse(lambda x, xh: ((x - xh).pow(2).sum() / x.pow(2).sum()).item())
    with pytest.raises(AssertionError, match="predicting the mean"):
        checks.check_normalised_mse(lambda x, xh: (x - xh).pow(2).mean().item())

    def spliced(model, dictionary, hook_name, tokens, everywhere=False):
        def splice(act, hook):
            out = dictionary(act)
            if not everywhere:
                out[:, 0] = act[:, 0]
            return out

        return hooks.mean_loss(model, tokens, [(hook_name, splice)])

    checks.check_spliced_loss(spliced, bundled_model)
    with pytest.raises(AssertionError, match="but the first"):
        checks.check_spliced_loss(lambda *a: spliced(*a, everywhere=True), bundled_model)
    with pytest.raises(AssertionError, match="but the first"):  # nothing spliced
        checks.check_spliced_loss(lambda m, d, h, t: hooks.mean_loss(m, t, []), bundled_model)

    def effects(model, dictionary, latent, k):
        top = (dictionary.W_dec[latent] @ model.W_U).topk(k)
        return top.values, top.indices

    checks.check_logit_effects(effects, bundled_model)
    with pytest.raises(AssertionError, match="decoder row"):  # the encoder column
        checks.check_logit_effects(lambda m, d, latent, k: tuple((d.W_enc[:, latent] @ m.W_U).topk(k)), bundled_model)
    with pytest.raises(AssertionError, match="Right tokens, wrong values"):
        checks.check_logit_effects(
            lambda m, d, latent, k: (effects(m, d, latent, k)[0] * 2, effects(m, d, latent, k)[1]), bundled_model
        )
