"""Notebook 07's checks pass the reference answers and reject plausible wrong ones with the message meant for them."""

import pytest
import torch

from interp_utils import hooks, probes, steering
from interp_utils.course.checks import probes_steering as checks


def mass_mean(x, y, sign=1.0, unit=False, no_bias=False):
    probe = probes.mass_mean_probe(x, y)
    d = sign * probe.direction
    bias = 0.0 if no_bias else sign * probe.bias
    return (d / d.norm() if unit else d), bias


def test_mass_mean_and_accuracy():
    checks.check_mass_mean(mass_mean)
    with pytest.raises(AssertionError, match="from the True class to the False"):
        checks.check_mass_mean(lambda x, y: mass_mean(x, y, sign=-1.0))
    with pytest.raises(AssertionError, match="normalised"):
        checks.check_mass_mean(lambda x, y: mass_mean(x, y, unit=True))
    with pytest.raises(AssertionError, match="halfway between the means"):
        checks.check_mass_mean(lambda x, y: mass_mean(x, y, no_bias=True))

    def accuracy(d, b, x, y):
        return float((((x @ d + b) > 0) == y).float().mean())

    checks.check_probe_accuracy(accuracy)
    with pytest.raises(AssertionError, match="fraction"):
        checks.check_probe_accuracy(lambda d, b, x, y: float((((x @ d + b) > 0) == y).sum()))
    with pytest.raises(AssertionError, match="bias is subtracted"):
        checks.check_probe_accuracy(lambda d, b, x, y: accuracy(d, -b, x, y))


def test_train_logistic():
    def fit(x, y, l2=1e-3, steps=100):
        p = probes.logistic_probe(x, y, l2=l2, steps=steps)
        return p.direction, p.bias

    checks.check_train_logistic(fit)
    with pytest.raises(AssertionError, match="labels are reversed"):
        checks.check_train_logistic(lambda x, y, l2, steps: fit(x, ~y, l2, steps))
    with pytest.raises(AssertionError, match="L2 penalty"):
        checks.check_train_logistic(lambda x, y, l2, steps: fit(x, y, 1e-4, steps))

    def no_bias(x, y, l2, steps):
        w = torch.zeros(x.shape[1], requires_grad=True)
        opt = torch.optim.LBFGS([w], max_iter=steps, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ w, y.float()) + l2 * w.pow(2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        return w.detach(), 0.0

    with pytest.raises(AssertionError, match="bias stayed 0"):
        checks.check_train_logistic(no_bias)


def test_accuracy_by_layer_and_control_task():
    def by_layer(fit, xtr, ytr, xte, yte, on_train=False, layer0=False):
        out = []
        for i in range(xtr.shape[1]):
            probe = fit(xtr[:, 0 if layer0 else i], ytr)
            out.append(probe.accuracy(xtr[:, i], ytr) if on_train else probe.accuracy(xte[:, i], yte))
        return out

    checks.check_accuracy_by_layer(by_layer)
    with pytest.raises(AssertionError, match="on the training set"):
        checks.check_accuracy_by_layer(lambda *a: by_layer(*a, on_train=True))
    with pytest.raises(AssertionError, match=r"x_train\[:, layer\]"):
        checks.check_accuracy_by_layer(lambda *a: by_layer(*a, layer0=True))

    checks.check_mention_counts(probes.earlier_mentions)
    with pytest.raises(AssertionError, match="counted the completing token itself"):  # positions up to and with `at`

        def with_itself(t, at):
            target = t[torch.arange(len(t)), at]
            return ((t == target[:, None]) & (torch.arange(t.shape[1])[None] <= at[:, None])).sum(1)

        checks.check_mention_counts(with_itself)
    with pytest.raises(AssertionError, match="counted the whole row"):
        checks.check_mention_counts(lambda t, at: (t == t[torch.arange(len(t)), at][:, None]).sum(1))
    with pytest.raises(AssertionError, match="one integer count per row"):  # a flag, not a count
        checks.check_mention_counts(lambda t, at: probes.earlier_mentions(t, at) > 0)


def iid(x, y, plain=False, total=False, times=False, no_bias=False, diagonal=False):
    pos, neg = x[y].mean(0), x[~y].mean(0)
    centred = x - x.mean(0) if total else torch.cat([x[y] - pos, x[~y] - neg])
    cov = centred.T @ centred / len(x)
    theta = pos - neg
    d = theta if plain else (cov @ theta if times else torch.linalg.pinv(cov, hermitian=True, atol=1e-3) @ theta)
    d = theta / cov.diagonal() if diagonal else d
    return d, 0.0 if no_bias else float(-d @ (pos + neg) / 2)


def test_mass_mean_iid():
    checks.check_mass_mean_iid(lambda x, y: (lambda p: (p.direction, p.bias))(probes.iid_mass_mean_probe(x, y)))
    checks.check_mass_mean_iid(lambda x, y: (lambda d, b: (3 * d, 3 * b))(*iid(x, y)))  # any positive scale
    # the covariance of all the data gives the same direction (Sherman-Morrison: it adds a multiple of θθᵀ)
    checks.check_mass_mean_iid(lambda x, y: iid(x, y, total=True))
    with pytest.raises(AssertionError, match="plain mass-mean"):
        checks.check_mass_mean_iid(lambda x, y: iid(x, y, plain=True))
    with pytest.raises(AssertionError, match="its inverse"):
        checks.check_mass_mean_iid(lambda x, y: iid(x, y, times=True))
    with pytest.raises(AssertionError, match="variances alone"):
        checks.check_mass_mean_iid(lambda x, y: iid(x, y, diagonal=True))
    with pytest.raises(AssertionError, match="halfway between the class means"):
        checks.check_mass_mean_iid(lambda x, y: iid(x, y, no_bias=True))


def test_cosines_top_latents_and_noise():
    checks.check_cosine_matrix(probes.cosines)
    with pytest.raises(AssertionError, match="dot products"):
        checks.check_cosine_matrix(lambda d: d @ d.T)
    with pytest.raises(AssertionError, match="each row"):
        checks.check_cosine_matrix(lambda d: (d / d.norm(dim=0, keepdim=True)) @ (d / d.norm(dim=0, keepdim=True)).T)

    checks.check_top_k_latents(probes.top_latents)
    with pytest.raises(AssertionError, match="not by how much they fire"):
        checks.check_top_k_latents(lambda a, y, k: a[y].mean(0).topk(k).indices)
    with pytest.raises(AssertionError, match="size of the"):
        checks.check_top_k_latents(lambda a, y, k: (a[y].mean(0) - a[~y].mean(0)).topk(k).indices)

    checks.check_noisy_labels(probes.flip_labels)

    def in_place(y, fraction, seed):
        flip = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))[: round(fraction * len(y))]
        y[flip] ^= True
        return y

    with pytest.raises(AssertionError, match="changed y itself"):
        checks.check_noisy_labels(in_place)

    def redraw(y, fraction, seed):
        g = torch.Generator().manual_seed(seed)
        out = y.clone()
        chosen = torch.randperm(len(y), generator=g)[: round(fraction * len(y))]
        out[chosen] = torch.rand(len(chosen), generator=g) < 0.5
        return out

    with pytest.raises(AssertionError, match="exactly 40"):
        checks.check_noisy_labels(redraw)


def test_logit_gap_steer_hook_and_slope():
    checks.check_logit_gap(steering.logit_gap)
    with pytest.raises(AssertionError, match="own position"):
        checks.check_logit_gap(lambda lg, at, p, m: steering.logit_gap(lg, torch.full_like(at, -1), p, m))

    def mean_gap(logits, at, plus, minus):
        final = logits[torch.arange(len(logits)), at]
        return final[:, plus].mean(-1) - final[:, minus].mean(-1)

    with pytest.raises(AssertionError, match="logsumexp"):
        checks.check_logit_gap(mean_gap)

    def steer(vector, alpha, bos=False, once=False):
        def hook(act, hook):
            act[:, (0 if bos else 1) :] += (1.0 if once else alpha) * vector
            return act

        return hook

    checks.check_steer_hook(steer)
    with pytest.raises(AssertionError, match="BOS"):
        checks.check_steer_hook(lambda v, a: steer(v, a, bos=True))
    with pytest.raises(AssertionError, match="once"):
        checks.check_steer_hook(lambda v, a: steer(v, a, once=True))

    checks.check_slope(steering.slope)
    with pytest.raises(AssertionError, match="two end points"):
        checks.check_slope(lambda a, v: (v[-1] - v[0]) / (a[-1] - a[0]))

    def uncentred(a, v):
        a, v = torch.tensor(a), torch.tensor(v)
        return float((a * v).sum() / (a * a).sum())

    with pytest.raises(AssertionError, match="centre"):
        checks.check_slope(uncentred)


def test_next_token_loss_actadd_and_pin():
    def loss(logits, tokens):
        return torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), tokens[:, 1:].flatten())

    checks.check_next_token_loss(loss)
    with pytest.raises(AssertionError, match="predict the token at p"):
        checks.check_next_token_loss(
            lambda lg, t: torch.nn.functional.cross_entropy(lg[:, 1:].flatten(0, 1), t[:, 1:].flatten())
        )
    with pytest.raises(AssertionError, match="sum"):
        checks.check_next_token_loss(
            lambda lg, t: torch.nn.functional.cross_entropy(
                lg[:, :-1].flatten(0, 1), t[:, 1:].flatten(), reduction="sum"
            )
        )

    def actadd(model, plus, minus, layer, kind="resid_pre", sign=1.0):
        name = hooks.name(kind, layer)
        with torch.inference_mode():
            _, a = model.run_with_cache(plus, names_filter=name)
            _, b = model.run_with_cache(minus, names_filter=name)
        return sign * (a[name] - b[name])[0]

    checks.check_actadd_vector(actadd)
    with pytest.raises(AssertionError, match="leaving the layer"):
        checks.check_actadd_vector(lambda m, p, n, layer: actadd(m, p, n, layer, kind="resid_post"))
    with pytest.raises(AssertionError, match="sign is reversed"):
        checks.check_actadd_vector(lambda m, p, n, layer: actadd(m, p, n, layer, sign=-1.0))

    def pin(sae, latents, value, keep_error=True, bos=False):
        def hook(act, hook):
            start = 0 if bos else 1
            x = act[:, start:]
            f = sae.encode(x)
            pinned = f.clone()
            pinned[..., latents] = value
            act = act.clone()
            act[:, start:] = x + sae.decode(pinned) - sae.decode(f) if keep_error else sae.decode(pinned)
            return act

        return hook

    checks.check_pin_hook(pin)
    with pytest.raises(AssertionError, match="error term"):
        checks.check_pin_hook(lambda s, lat, v: pin(s, lat, v, keep_error=False))
    with pytest.raises(AssertionError, match="BOS"):
        checks.check_pin_hook(lambda s, lat, v: pin(s, lat, v, bos=True))


def test_steer_hook_that_returns_nothing_is_told_to_return_the_activation():
    def returns_none(vector, alpha):
        def hook(act, hook):
            act[:, 1:] += alpha * vector

        return hook

    with pytest.raises(AssertionError, match="must return the activation"):
        checks.check_steer_hook(returns_none)
