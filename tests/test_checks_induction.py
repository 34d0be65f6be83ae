"""Notebook 02's checks: the core exercises' checks pass the reference and reject at least three plausible wrong
answers each with the message meant for it; the older checks get their third wrong answer here (the first two are in
test_checks.py)."""

from functools import partial

import pytest
import torch
from transformer_lens import HookedTransformerConfig

from interp_utils.circuits import heads
from interp_utils.core import hooks
from interp_utils.course.checks import induction_heads as checks

# ---------------------------------------------------------------- score every head


def scores_from(score: callable):
    """A ``score_heads`` built on the reference masks, with ``score(pattern, mask, has_src)`` -> [head]."""

    def score_heads(model, tokens):
        _, cache = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_pattern"))
        out = {}
        for kind, mask in heads.head_masks(tokens).items():
            has_src = mask.any(-1)
            out[kind] = torch.stack(
                [score(cache["pattern", layer].detach(), mask, has_src) for layer in range(model.cfg.n_layers)]
            )
        return out

    return score_heads


def right_score(pattern, mask, has_src):
    return ((pattern * mask[:, None]).sum(-1) * has_src[:, None]).sum((0, 2)) / has_src.sum()


def test_score_heads():
    checks.check_score_heads(scores_from(right_score))
    checks.check_score_heads(lambda m, t: heads.head_scores(m, t))
    with pytest.raises(AssertionError, match="only"):  # every destination counted, not only those with a source
        checks.check_score_heads(scores_from(lambda p, m, h: (p * m[:, None]).sum(-1).mean((0, 2))))
    with pytest.raises(AssertionError, match="layer order"):  # [head, layer]
        checks.check_score_heads(lambda m, t: {k: v.T for k, v in heads.head_scores(m, t).items()})
    with pytest.raises(AssertionError, match="its own mask"):  # the induction score read from the duplicate mask

        def swapped(model, tokens):
            got = heads.head_scores(model, tokens)
            return {**got, "induction": got["duplicate_token"]}

        checks.check_score_heads(swapped)
    with pytest.raises(AssertionError, match="the whole batch"):  # the first sequence only
        checks.check_score_heads(scores_from(lambda p, m, h: right_score(p[:1], m[:1], h[:1])))
    with pytest.raises(AssertionError, match="keys"):  # a list, not a dict
        checks.check_score_heads(lambda m, t: list(heads.head_scores(m, t).values()))


# ---------------------------------------------------------------- training


def right_loss(logits, tokens):
    return -logits.log_softmax(-1)[:, :-1].gather(-1, tokens[:, 1:, None])[..., 0]


def step_with(loss_fn):
    def step(model, optimizer, tokens):
        loss = loss_fn(model(tokens), tokens).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def test_training():
    checks.check_training(right_loss, heads.attn_only_train_step, heads.attn_only_train)
    checks.check_training(right_loss, step_with(right_loss), heads.attn_only_train)
    with pytest.raises(AssertionError, match="not token p"):  # no shift: each position scored on its own token
        checks.check_training(
            lambda lg, t: -lg.log_softmax(-1)[:, 1:].gather(-1, t[:, 1:, None])[..., 0],
            step_with(right_loss),
            heads.attn_only_train,
        )
    with pytest.raises(AssertionError, match="not the raw logit"):  # minus the logit, not the log-probability
        checks.check_training(
            lambda lg, t: -lg[:, :-1].gather(-1, t[:, 1:, None])[..., 0], step_with(right_loss), heads.attn_only_train
        )
    with pytest.raises(AssertionError, match=r"pos - 1"):  # every position, the last included
        checks.check_training(
            lambda lg, t: torch.nn.functional.pad(right_loss(lg, t), (0, 1)),
            step_with(right_loss),
            heads.attn_only_train,
        )
    with pytest.raises(AssertionError, match="vocabulary axis"):  # softmax over positions
        checks.check_training(
            lambda lg, t: -lg.log_softmax(1)[:, :-1].gather(-1, t[:, 1:, None])[..., 0],
            step_with(right_loss),
            heads.attn_only_train,
        )

    def no_zero_grad(model, optimizer, tokens):
        loss = right_loss(model(tokens), tokens).mean()
        loss.backward()
        optimizer.step()
        return loss.item()

    with pytest.raises(AssertionError, match="zero_grad"):
        checks.check_training(right_loss, no_zero_grad, heads.attn_only_train)

    def after_step(model, optimizer, tokens):  # the loss after the update
        step_with(right_loss)(model, optimizer, tokens)
        return right_loss(model(tokens), tokens).mean().item()

    with pytest.raises(AssertionError, match="the loss before the step"):
        checks.check_training(right_loss, after_step, heads.attn_only_train)

    def measure_after(model, optimizer, steps, make_batch, eval_every, measure):
        history, losses = [], []
        for step in range(1, steps + 1):
            losses.append(heads.attn_only_train_step(model, optimizer, make_batch()))
            if step % eval_every == 0 or step == steps:
                history.append({"step": step, **measure(model)})
        return history, losses

    def no_final(model, optimizer, steps, make_batch, eval_every, measure):
        history, losses = [], []
        for step in range(steps):
            if step % eval_every == 0:
                history.append({"step": step, **measure(model)})
            losses.append(heads.attn_only_train_step(model, optimizer, make_batch()))
        return history, losses

    def one_batch(model, optimizer, steps, make_batch, eval_every, measure):
        batch = make_batch()
        return heads.attn_only_train(model, optimizer, steps, lambda: batch, eval_every, measure)

    with pytest.raises(AssertionError, match="Measure before the\nfirst step|Measure before the first step"):
        checks.check_training(right_loss, heads.attn_only_train_step, measure_after)
    with pytest.raises(AssertionError, match="after the final update"):
        checks.check_training(right_loss, heads.attn_only_train_step, no_final)
    with pytest.raises(AssertionError, match="one new batch per step"):
        checks.check_training(right_loss, heads.attn_only_train_step, one_batch)


# ---------------------------------------------------------------- composition


def comp_from(reader):
    """Composition scores with ``reader(W_Q, W_K, W_V, W_O, mode)`` the later head's matrix, looped over pairs."""

    def fn(model, mode, all_pairs=False, normalise=True):
        W_OV = model.W_V @ model.W_O
        M = reader(model.W_Q, model.W_K, model.W_V, model.W_O, mode)
        n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
        out = torch.zeros(n_layers, n_heads, n_layers, n_heads)
        for l1 in range(n_layers):
            for l2 in range(n_layers) if all_pairs else range(l1 + 1, n_layers):
                for h1 in range(n_heads):
                    for h2 in range(n_heads):
                        a, b = W_OV[l1, h1], M[l2, h2]
                        out[l1, h1, l2, h2] = (a @ b).norm() / ((a.norm() * b.norm()) if normalise else 1)
        return out

    return fn


def right_reader(W_Q, W_K, W_V, W_O, mode):
    W_QK = W_Q @ W_K.mT
    return {"Q": W_QK, "K": W_QK.mT, "V": W_V @ W_O}[mode]


def baseline(d_model, d_head, samples=200, seed=0, normalise=True, full_rank=False):
    g = torch.Generator().manual_seed(seed)
    if full_rank:
        first, second = (torch.randn(samples, d_model, d_model, generator=g) for _ in range(2))
    else:
        a, b, c, d = (torch.randn(samples, *s, generator=g) for s in [(d_model, d_head), (d_head, d_model)] * 2)
        first, second = a @ b, c @ d
    norm = (first.flatten(1).norm(dim=1) * second.flatten(1).norm(dim=1)) if normalise else 1
    scores = (first @ second).flatten(1).norm(dim=1) / norm
    return scores.mean().item(), scores.std().item()


def test_composition_scores():
    checks.check_composition_scores(comp_from(right_reader), baseline)
    checks.check_composition_scores(lambda m, mode: heads.composition_scores(m, mode), heads.composition_baseline)
    with pytest.raises(AssertionError, match="equals the reference's"):  # Q and K swapped
        checks.check_composition_scores(
            comp_from(lambda q, k, v, o, mode: right_reader(q, k, v, o, {"Q": "K", "K": "Q"}.get(mode, mode))), baseline
        )
    with pytest.raises(AssertionError, match="each pair normalised"):  # not normalised
        checks.check_composition_scores(lambda m, mode: comp_from(right_reader)(m, mode, normalise=False), baseline)
    with pytest.raises(AssertionError, match="must score 0"):  # same-layer and backward pairs scored
        checks.check_composition_scores(lambda m, mode: comp_from(right_reader)(m, mode, all_pairs=True), baseline)
    with pytest.raises(AssertionError, match="W_OV .V. of the later one"):  # V read through W_O W_V
        checks.check_composition_scores(
            comp_from(lambda q, k, v, o, mode: (o.mT @ v.mT) if mode == "V" else right_reader(q, k, v, o, mode)),
            baseline,
        )
    with pytest.raises(AssertionError, match="low rank, like a real head"):  # full-rank random matrices
        checks.check_composition_scores(comp_from(right_reader), partial(baseline, full_rank=True))
    with pytest.raises(AssertionError, match="the score is normalised"):
        checks.check_composition_scores(comp_from(right_reader), partial(baseline, normalise=False))


# ---------------------------------------------------------------- key removal


def key_removal(model, tokens, receiver, *, where="k_input", w_o=True, restore=True, layer_out=False, shift=1):
    layer, head = receiver
    _, cache = model.run_with_cache(tokens, names_filter=hooks.name("z", layer - shift))
    z = cache[hooks.name("z", layer - shift)]
    out = torch.zeros(model.cfg.n_heads)
    model.set_use_split_qkv_input(True)
    for h in range(model.cfg.n_heads):
        if layer_out:
            written = torch.einsum("bphd,hdm->bpm", z, model.W_O[layer - shift])
        else:
            written = torch.einsum("bpd,dm->bpm", z[:, :, h], model.W_O[layer - shift, h])
        hook = partial(heads.remove_from_keys, output=written, receiver=head)
        with model.hooks(fwd_hooks=[(hooks.name(where, layer), hook)]):
            out[h] = heads.head_scores(model, tokens)["induction"][layer, head]
    if restore:
        model.set_use_split_qkv_input(False)
    return out


def test_key_removal_scores():
    checks.check_key_removal_scores(key_removal)
    with pytest.raises(AssertionError, match="Leave the model as you found it"):
        checks.check_key_removal_scores(partial(key_removal, restore=False))
    with pytest.raises(AssertionError, match="not the whole layer's"):  # the layer's whole output each time
        checks.check_key_removal_scores(partial(key_removal, layer_out=True))
    with pytest.raises(AssertionError, match="receiver's keys only"):  # its queries instead
        checks.check_key_removal_scores(partial(key_removal, where="q_input"))
    with pytest.raises(AssertionError, match="receiver's keys only"):  # nothing removed at all
        checks.check_key_removal_scores(lambda m, t, r: heads.head_scores(m, t)["induction"][r].repeat(3))


# ---------------------------------------------------------------- OV copying


def ov(model, *, real=True, clamp=True, transpose=False, big=False):
    W_E, W_U = model.W_E.detach(), model.W_U.detach()
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    eigen, top1 = torch.zeros(n_layers, n_heads), torch.zeros(n_layers, n_heads)
    for layer in range(n_layers):
        for head in range(n_heads):
            full = heads.full_ov_circuit(model, layer, head).detach()
            top1[layer, head] = heads.top1_copying(full.T if transpose else full)
            small = full if big else model.W_O[layer, head] @ W_U @ W_E @ model.W_V[layer, head]
            lam = torch.linalg.eigvals(small.detach())
            denom = lam.abs().sum().clamp_min(1e-12) if clamp else lam.abs().sum()
            eigen[layer, head] = (lam.sum() / denom).real if real else (lam.sum().real / lam.real.sum())
    return eigen, top1


def test_ov_copying():
    checks.check_ov_copying(ov)
    checks.check_ov_copying(lambda m: (heads.ov_eigen_copying(m), ov(m)[1]))
    with pytest.raises(AssertionError, match="sum\\(λ\\) / sum\\(\\|λ\\|\\)"):  # normalised by the real parts' sum
        checks.check_ov_copying(partial(ov, real=False))
    with pytest.raises(AssertionError, match="A nan score"):  # a silent head's 0 / 0
        checks.check_ov_copying(partial(ov, clamp=False))
    with pytest.raises(AssertionError, match="argmax along a row"):  # columns instead of rows
        checks.check_ov_copying(partial(ov, transpose=True))
    with pytest.raises(AssertionError, match=r"\[layer, head\] = \(1, 2\)"):  # flattened
        checks.check_ov_copying(lambda m: tuple(x.flatten() for x in ov(m)))


# ---------------------------------------------------------------- ablation


def ablation(model, tokens, ablate, means=None, *, axis=2, each_layer=False):
    by_layer: dict[int, list[int]] = {}
    for layer, head in ablate:
        by_layer.setdefault(layer, []).append(head)

    def make(layer, hs):
        def hook(z, hook):
            index = (slice(None),) * axis + (hs,)
            z[index] = 0.0 if means is None else means[layer, hs]
            return z

        return hook

    if each_layer:  # the first layer's heads ablated in every layer
        first = next(iter(by_layer.values()), [])
        by_layer = {layer: first for layer in range(model.cfg.n_layers)} if ablate else {}
    fwd = [(hooks.name("z", layer), make(layer, hs)) for layer, hs in by_layer.items()]
    return model.run_with_hooks(tokens, return_type="loss", loss_per_token=True, fwd_hooks=fwd)


def test_ablation():
    checks.check_ablation(heads.mean_head_outputs, ablation)
    with pytest.raises(AssertionError, match=r"axes 0, 1"):  # averaged over the batch only
        checks.check_ablation(lambda m, t: m.run_with_cache(t)[1].stack_activation("z").mean(1)[:, 0], ablation)
    with pytest.raises(AssertionError, match=r"\[layer, head, d_head\]"):  # averaged over heads too
        checks.check_ablation(lambda m, t: heads.mean_head_outputs(m, t).mean(1), ablation)
    with pytest.raises(AssertionError, match="the head axis is the third"):  # the position axis
        checks.check_ablation(heads.mean_head_outputs, partial(ablation, axis=1))
    with pytest.raises(AssertionError, match="at its own layer"):  # every layer
        checks.check_ablation(heads.mean_head_outputs, partial(ablation, each_layer=True))
    with pytest.raises(AssertionError, match="nothing is ablated|With nothing ablated"):  # the mean loss
        checks.check_ablation(heads.mean_head_outputs, lambda m, t, a, means=None: ablation(m, t, a, means).mean())

    def zero_always(model, tokens, ablate, means=None):
        return ablation(model, tokens, ablate, None)

    with pytest.raises(AssertionError, match="mean-ablating"):  # the means ignored
        checks.check_ablation(heads.mean_head_outputs, zero_always)


# ---------------------------------------------------------------- the older checks' third wrong answer


def test_older_checks_third_wrong_answer():
    with pytest.raises(AssertionError, match="shape"):  # no batch axis
        checks.check_previous_token_mask(lambda t: heads.head_masks(t)["previous_token"][0])
    with pytest.raises(AssertionError, match="mask is wrong"):  # later copies only
        checks.check_duplicate_token_mask(lambda t: heads.head_masks(t)["duplicate_token"].transpose(1, 2))
    with pytest.raises(AssertionError, match="mask is wrong"):  # shifted the wrong way (src + 1)
        checks.check_induction_mask(
            lambda t: (
                torch.nn.functional.pad((t[:, :, None] == t[:, None, :])[:, :, 1:], (0, 1))
                & torch.ones(t.shape[1], t.shape[1]).tril(-1).bool()
            )
        )

    def wide(n, v, s, d):
        cfg = heads.attn_only_config(n, v, s, d)
        return HookedTransformerConfig(**{**cfg.to_dict(), "d_model": 128, "d_head": 32})

    with pytest.raises(AssertionError, match="d_model = 128"):
        checks.check_attn_only_config(wide)

    with pytest.raises(AssertionError, match="check the sign"):  # a ratio, not a difference
        checks.check_icl_score(lambda loss: (loss[:, -10:].mean() / loss[:, 1:10].mean()).item())
    with pytest.raises(AssertionError, match="expected"):  # cosine of the flattened matrices
        checks.check_composition_score(
            lambda a, b: torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0)
        )

    with pytest.raises(AssertionError, match="check the order"):  # the keys' weights instead of the values'
        checks.check_full_ov_circuit(lambda m, layer, h: m.W_E @ m.W_K[layer, h] @ m.W_O[layer, h] @ m.W_U)
    with pytest.raises(AssertionError, match="2/3"):  # the largest diagonal entry's share
        checks.check_top1_copying(lambda ov: (ov.diagonal() >= ov.max()).float().mean().item())
    with pytest.raises(AssertionError, match="check the scale"):  # keys read W_Q
        checks.check_positional_qk(
            lambda m, layer, h: (m.W_pos @ m.W_Q[layer, h]) @ (m.W_pos @ m.W_Q[layer, h]).T / m.cfg.d_head**0.5
        )

    def nothing_removed(k_input, hook, output, receiver):
        return k_input * 1.0

    with pytest.raises(AssertionError, match="other heads' keys"):  # nothing removed
        checks.check_remove_from_keys(nothing_removed)
