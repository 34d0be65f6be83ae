"""Notebook 07's checks pass the reference answers and reject plausible wrong ones with the message meant for them."""

import pytest
import torch

from interp_utils import hooks, probes, steering
from interp_utils.course.checks import probes_steering as checks


def mass_mean(x, y, iid=False, sign=1.0, unit=False, no_bias=False, **wrong):
    if iid:
        return iid_answer(x, y, **wrong)
    probe = probes.mass_mean_probe(x, y)
    d = sign * probe.direction
    bias = 0.0 if no_bias else sign * probe.bias
    return (d / d.norm() if unit else d), bias


def iid_answer(x, y, plain=False, total=False, times=False, no_bias=False, diagonal=False, inverse=False):
    pos, neg = x[y].mean(0), x[~y].mean(0)
    centred = x - x.mean(0) if total else torch.cat([x[y] - pos, x[~y] - neg])
    cov = centred.T @ centred / len(x)
    theta = pos - neg
    invert = torch.linalg.inv if inverse else lambda m: torch.linalg.pinv(m, hermitian=True, atol=1e-3)
    d = theta if plain else (cov @ theta if times else invert(cov) @ theta)
    d = theta / cov.diagonal() if diagonal else d
    return d, 0.0 if no_bias else float(-d @ (pos + neg) / 2)


def test_mass_mean_plain_and_iid_and_accuracy():
    checks.check_mass_mean(mass_mean)
    checks.check_mass_mean(lambda x, y, iid=False: (lambda d, b: (3 * d, 3 * b))(*mass_mean(x, y, iid)) if iid
                           else mass_mean(x, y))  # fmt: skip  # Σ⁻¹θ at any positive scale
    wrong = [
        (dict(sign=-1.0), "from the True class to the False"),
        (dict(unit=True), "normalised"),
        (dict(no_bias=True), "halfway between the means"),
        (dict(plain=True), "plain mass-mean"),
        (dict(times=True), "its inverse"),
        (dict(diagonal=True), "variances alone"),
        (dict(inverse=True), "singular"),
        (dict(total=True), "each class on its own mean"),
    ]
    for flags, message in wrong:
        with pytest.raises(AssertionError, match=message):
            checks.check_mass_mean(lambda x, y, iid=False, flags=flags: mass_mean(x, y, iid, **flags))

    def unchecked(x, y, iid=False):
        if iid:
            return iid_answer(x, y)
        pos, neg = x[y].mean(0), x[~y].mean(0)
        return pos - neg, float(-(pos - neg) @ (pos + neg) / 2)

    with pytest.raises(AssertionError, match="raise a ValueError"):
        checks.check_mass_mean(unchecked)
    with pytest.raises(AssertionError, match="halfway between the class means"):  # the bias left out with iid=True
        checks.check_mass_mean(lambda x, y, iid=False: iid_answer(x, y, no_bias=True) if iid else mass_mean(x, y))

    def accuracy(d, b, x, y):
        return float((((x @ d + b) > 0) == y).float().mean())

    checks.check_probe_accuracy(accuracy)
    with pytest.raises(AssertionError, match="fraction"):
        checks.check_probe_accuracy(lambda d, b, x, y: float((((x @ d + b) > 0) == y).sum()))
    with pytest.raises(AssertionError, match="bias is subtracted"):
        checks.check_probe_accuracy(lambda d, b, x, y: accuracy(d, -b, x, y))
    with pytest.raises(AssertionError, match="Python float"):  # a 0-d tensor
        checks.check_probe_accuracy(lambda d, b, x, y: (((x @ d + b) > 0) == y).float().mean())


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
    with pytest.raises(AssertionError, match="list of 3 floats"):  # a tensor
        checks.check_accuracy_by_layer(lambda *a: torch.tensor(by_layer(*a)))

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


def test_cosines_top_latents_and_noise():
    checks.check_cosine_matrix(probes.cosines)
    with pytest.raises(AssertionError, match="dot products"):
        checks.check_cosine_matrix(lambda d: d @ d.T)
    with pytest.raises(AssertionError, match="each row"):
        checks.check_cosine_matrix(lambda d: (d / d.norm(dim=0, keepdim=True)) @ (d / d.norm(dim=0, keepdim=True)).T)
    with pytest.raises(AssertionError, match=r"\[3, 3\] matrix"):  # the product the wrong way round: [d, d]
        checks.check_cosine_matrix(lambda d: (d / d.norm(dim=-1, keepdim=True)).T @ (d / d.norm(dim=-1, keepdim=True)))

    checks.check_top_k_latents(probes.top_latents)
    with pytest.raises(AssertionError, match="not by how much they fire"):
        checks.check_top_k_latents(lambda a, y, k: a[y].mean(0).topk(k).indices)
    with pytest.raises(AssertionError, match="size of the"):
        checks.check_top_k_latents(lambda a, y, k: (a[y].mean(0) - a[~y].mean(0)).topk(k).indices)
    with pytest.raises(AssertionError, match="indices"):
        checks.check_top_k_latents(lambda a, y, k: (a[y].mean(0) - a[~y].mean(0)).abs().topk(k).values)

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
    with pytest.raises(AssertionError, match="Seeds 0 and 1 flipped the same rows"):
        checks.check_noisy_labels(lambda y, fraction, seed: probes.flip_labels(y, fraction, 0))


def test_logit_gap_steer_hook_and_slope():
    checks.check_logit_gap(steering.logit_gap)
    with pytest.raises(AssertionError, match="own position"):
        checks.check_logit_gap(lambda lg, at, p, m: steering.logit_gap(lg, torch.full_like(at, -1), p, m))

    def mean_gap(logits, at, plus, minus):
        final = logits[torch.arange(len(logits)), at]
        return final[:, plus].mean(-1) - final[:, minus].mean(-1)

    with pytest.raises(AssertionError, match="logsumexp"):
        checks.check_logit_gap(mean_gap)
    with pytest.raises(AssertionError, match="sign is reversed"):
        checks.check_logit_gap(lambda lg, at, p, m: steering.logit_gap(lg, at, m, p))

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
    with pytest.raises(AssertionError, match="Python float"):
        checks.check_slope(lambda a, v: torch.tensor(steering.slope(a, v)))


def test_next_token_loss_and_pin():
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
    with pytest.raises(AssertionError, match="0-d tensor"):  # a Python float
        checks.check_next_token_loss(lambda lg, t: float(loss(lg, t)))

    def pin(sae, latents, value, keep_error=True, bos=False, no_copy=False):
        def hook(act, hook):
            start = 0 if bos else 1
            x = act[:, start:]
            f = sae.encode(x)
            pinned = f if no_copy else f.clone()
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
    with pytest.raises(AssertionError, match="Nothing changed"):
        checks.check_pin_hook(lambda s, lat, v: pin(s, lat, v, no_copy=True))


def test_steer_hook_that_returns_nothing_is_told_to_return_the_activation():
    def returns_none(vector, alpha):
        def hook(act, hook):
            act[:, 1:] += alpha * vector

        return hook

    with pytest.raises(AssertionError, match="must return the activation"):
        checks.check_steer_hook(returns_none)


def collect(model, tokens, positions, batch_size=64, kind="resid_post", last=False, drop_tail=False, same_at=False):
    """probes.residuals_at with the usual mistakes switched on."""
    out = []
    stop = len(tokens) - len(tokens) % batch_size if drop_tail else len(tokens)
    for start in range(0, stop, batch_size):
        chunk = tokens[start : start + batch_size]
        at = positions[:batch_size] if same_at else positions[start : start + batch_size]
        at = torch.full_like(at, tokens.shape[1] - 1) if last else at
        out.append(probes.residuals_at(model, chunk, at[: len(chunk)], kind=kind))
    return torch.cat(out)


def test_residuals_at():
    checks.check_residuals_at(probes.residuals_at)
    checks.check_residuals_at(collect)
    for flags, message in [
        (dict(kind="resid_pre"), "resid_pre"),
        (dict(last=True), "last column"),
        (dict(same_at=True), "first batch's positions"),
        (dict(drop_tail=True), "last, shorter batch"),
    ]:
        with pytest.raises(AssertionError, match=message):
            checks.check_residuals_at(lambda m, t, p, batch_size=64, flags=flags: collect(m, t, p, batch_size, **flags))


def test_paired():
    def paired(a, b, se_of=lambda d: d.std() / len(d) ** 0.5, guard=True):
        d = a - b
        mean, se = float(d.mean()), float(se_of(d))
        return mean, se, (mean / se if se > 0 else 0.0) if guard else mean / se

    checks.check_paired(paired)
    with pytest.raises(AssertionError, match="not by n"):
        checks.check_paired(lambda a, b: paired(a, b, se_of=lambda d: d.std() / len(d)))
    with pytest.raises(AssertionError, match="sample one"):
        checks.check_paired(lambda a, b: paired(a, b, se_of=lambda d: d.std(unbiased=False) / len(d) ** 0.5))

    def unpaired(a, b):
        mean, se = float((a - b).mean()), float((a.var() / len(a) + b.var() / len(b)).sqrt())
        return mean, se, mean / se

    with pytest.raises(AssertionError, match="unpaired"):
        checks.check_paired(unpaired)
    with pytest.raises(AssertionError, match="se 0"):
        checks.check_paired(lambda a, b: paired(a, b, guard=False))


def mt(*args, size=None, positions=None, **flags):
    """The check's reference (the suite's steering.mt_effect), with the usual mistakes switched on."""
    return steering.mt_effect(*args, size=size, positions=positions, **flags)


def test_mt_effect():
    checks.check_mt_effect(mt)
    for flags, message in [
        (dict(change=False), "its change"),
        (dict(sign=-1.0), "from the True class to the False"),
        (dict(kind="resid_pre"), "resid_post of l"),
        (dict(start=0), "BOS"),
        (dict(unit=False), "length cancels"),
    ]:
        with pytest.raises(AssertionError, match=message):
            checks.check_mt_effect(lambda *a, flags=flags, **k: mt(*a, **k, **flags))

    def no_size(*args, size=None, positions=None):
        return mt(*args, positions=positions)

    with pytest.raises(AssertionError, match="size=0.5"):
        checks.check_mt_effect(no_size)

    def everywhere(*args, size=None, positions=None):  # positions ignored: steered after BOS everywhere
        return mt(*args, size=size)

    with pytest.raises(AssertionError, match="one position of each row"):
        checks.check_mt_effect(everywhere)


def actadd_vector(model, plus, minus, layer, pad_id, kind="resid_pre", sign=1.0, left=False):
    if left:
        n = max(plus.shape[1], minus.shape[1])
        a, b = [torch.cat([t[:, :1], t.new_full((1, n - t.shape[1]), pad_id), t[:, 1:]], 1) for t in (plus, minus)]
    else:
        a, b = steering.pad_pair(plus, minus, pad_id)
    name = hooks.name(kind, layer)
    with torch.inference_mode():
        _, ca = model.run_with_cache(a, names_filter=name)
        _, cb = model.run_with_cache(b, names_filter=name)
    return sign * (ca[name] - cb[name])[0]


def actadd_hooks(layer, vector, coeff, starts=None, right=False, no_coeff=False, strict=False):
    def hook(act, hook):
        act = act.clone()
        v = (1.0 if no_coeff else coeff) * vector
        if strict:  # assumes the prompt is at least as long as the vector
            act[:, : len(v)] += v
            return act
        n = min(len(v), act.shape[1])
        if right:
            act[:, act.shape[1] - n :] += v[len(v) - n :]
        else:
            act[:, :n] += v[:n]
        return act

    return [(hooks.name("resid_pre", layer), hook)]


def test_actadd():
    checks.check_actadd(actadd_vector, actadd_hooks)
    checks.check_actadd(actadd_vector, steering.add_hooks)
    for flags, message in [
        (dict(kind="resid_post"), "leaving the layer"),
        (dict(sign=-1.0), "sign is reversed"),
        (dict(left=True), "before the prompt"),
    ]:
        with pytest.raises(AssertionError, match=message):
            checks.check_actadd(lambda *a, flags=flags: actadd_vector(*a, **flags), actadd_hooks)
    with pytest.raises(AssertionError, match="pad the shorter to 5"):  # truncated to the shorter prompt

        def truncated(model, plus, minus, layer, pad_id):
            n = min(plus.shape[1], minus.shape[1])
            return actadd_vector(model, plus[:, :n], minus[:, :n], layer, pad_id)

        checks.check_actadd(truncated, actadd_hooks)
    for flags, message in [
        (dict(right=True), "aligns it with the"),
        (dict(no_coeff=True), "coefficient is missing"),
        (dict(strict=True), "positions both have"),
    ]:
        with pytest.raises(AssertionError, match=message):
            checks.check_actadd(actadd_vector, lambda *a, flags=flags, **k: actadd_hooks(*a, **k, **flags))
