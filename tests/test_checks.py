"""Every exercise check passes the reference answer and rejects plausible wrong ones with the message aimed at them."""

import inspect

import pytest
import torch
from transformer_lens import HookedTransformerConfig

from interp_utils import attribution_graph as graph
from interp_utils import heads, sae, sae_metrics, superposition
from interp_utils.course.checks import (
    NotAnswered,
    circuit_discovery,
    circuit_tracing,
    induction_heads,
    probes_steering,
    sparse_autoencoders,
)
from interp_utils.course.checks import ioi as ioi_checks
from interp_utils.course.checks import superposition as toy_checks


def _dimensionality(W, clamp=True):
    unit = W / W.norm(dim=1, keepdim=True).clamp_min(1e-8)
    overlaps = torch.einsum("ihf,ihg->ifg", unit, W).pow(2).sum(-1)
    return W.pow(2).sum(1) / (overlaps.clamp_min(1e-8) if clamp else overlaps)


def _batch_of_sparsity(p, batch):  # present with probability 1 - p: the sparsity read as the probability
    x = torch.rand(batch, *p.shape)
    return x * (torch.rand(batch, *p.shape) > p)


def test_notebook_01_checks():
    toy_checks.check_weighted_mse(superposition.weighted_mse)
    with pytest.raises(AssertionError, match="summed over instances"):  # averaged over instances too
        toy_checks.check_weighted_mse(lambda out, x, imp: (imp * (out - x) ** 2).mean())
    with pytest.raises(AssertionError, match="summed over instances"):  # importance forgotten
        toy_checks.check_weighted_mse(lambda out, x, imp: ((out - x) ** 2).mean(dim=(0, 2)).sum())
    toy_checks.check_feature_dimensionality(_dimensionality)
    with pytest.raises(AssertionError, match="every feature has dimensionality"):  # a norm, not a share of a dimension
        toy_checks.check_feature_dimensionality(lambda W: W.norm(dim=1))
    with pytest.raises(AssertionError, match="not nan"):  # 0 / 0 for a feature the model ignores
        toy_checks.check_feature_dimensionality(lambda W: _dimensionality(W, clamp=False))


def test_notebook_01_checks_of_the_model():
    toy_checks.check_generate_batch(superposition.generate_batch)
    with pytest.raises(AssertionError, match="not with the sparsity"):
        toy_checks.check_generate_batch(_batch_of_sparsity)
    with pytest.raises(AssertionError, match="uniform on"):  # present features all 1
        toy_checks.check_generate_batch(lambda p, n: (torch.rand(n, *p.shape) <= p).float())
    toy_checks.check_toy_forward(superposition.toy_forward)
    with pytest.raises(AssertionError, match="after the ReLU"):  # the bias forgotten
        toy_checks.check_toy_forward(lambda W, b, x, relu=True: superposition.toy_forward(W, 0 * b, x, relu))
    with pytest.raises(AssertionError, match="the linear model"):  # the ReLU applied whatever relu says
        toy_checks.check_toy_forward(lambda W, b, x, relu=True: superposition.toy_forward(W, b, x, True))


def test_notebook_01_checks_of_the_measures():
    toy_checks.check_feature_norms(superposition.feature_norms)
    with pytest.raises(AssertionError, match="one norm per column"):  # norm over the wrong axis
        toy_checks.check_feature_norms(lambda W: W.norm(dim=2))
    with pytest.raises(AssertionError, match="not squared"):
        toy_checks.check_feature_norms(lambda W: W.pow(2).sum(1))
    toy_checks.check_interference(superposition.superposition_interference)
    with pytest.raises(AssertionError, match="Leave out j = i"):  # the diagonal kept
        toy_checks.check_interference(lambda W: superposition.superposition_interference(W) + (W.norm(dim=1) > 0))
    with pytest.raises(AssertionError, match="unit"):  # W_i not normalised
        toy_checks.check_interference(
            lambda W: torch.einsum("ihf,ihg->ifg", W, W).pow(2).sum(-1) - W.norm(dim=1).pow(4)
        )
    toy_checks.check_dimensions_per_feature(superposition.dimensions_per_feature)
    with pytest.raises(AssertionError, match="hidden size"):  # n instead of m
        toy_checks.check_dimensions_per_feature(lambda W: W.shape[2] / W.pow(2).sum(dim=(1, 2)))
    with pytest.raises(AssertionError, match="squared"):
        toy_checks.check_dimensions_per_feature(lambda W: W.shape[1] / W.pow(2).sum(dim=(1, 2)).sqrt())
    toy_checks.check_configuration_losses(superposition.configuration_losses)

    def variance_with_e_x2_half(p, r):  # E[x^2] taken as p / 2
        p, r = torch.as_tensor(p), torch.as_tensor(r)
        v = p / 2 - p**2 / 4
        return torch.stack([r * v, v, p**2 * (1 + r) / 6], -1)

    def pair_errs_whenever_one_is_present(p, r):  # p, not p^2
        p, r = torch.as_tensor(p), torch.as_tensor(r)
        return torch.stack([r * (p / 3 - p**2 / 4), p / 3 - p**2 / 4, p * (1 + r) / 6], -1)

    with pytest.raises(AssertionError, match="1/12"):
        toy_checks.check_configuration_losses(variance_with_e_x2_half)
    with pytest.raises(AssertionError, match="sampling gives"):
        toy_checks.check_configuration_losses(pair_errs_whenever_one_is_present)


def test_notebook_01_checks_of_computation():
    toy_checks.check_abs_forward(superposition.abs_forward)
    with pytest.raises(AssertionError, match="computes"):  # no hidden ReLU: a linear map cannot compute |x|
        toy_checks.check_abs_forward(
            lambda W1, b1, W2, b2, x: torch.relu(
                torch.einsum("ifn,bin->bif", W2, torch.einsum("inf,bif->bin", W1, x) + b1) + b2
            )
        )
    with pytest.raises(AssertionError, match="both biases"):  # b2 forgotten
        toy_checks.check_abs_forward(lambda W1, b1, W2, b2, x: superposition.abs_forward(W1, b1, W2, 0 * b2, x))
    toy_checks.check_neuron_share(superposition.neuron_share)
    with pytest.raises(AssertionError, match="square before comparing"):  # signed weights compared
        toy_checks.check_neuron_share(lambda W: W.max(-1).values.pow(2) / W.pow(2).sum(-1).clamp_min(1e-12))
    with pytest.raises(AssertionError, match="shares 1, 1/2, 0"):  # 0 / 0 for a silent neuron
        toy_checks.check_neuron_share(lambda W: W.pow(2).max(-1).values / W.pow(2).sum(-1))


def test_notebook_02_checks():
    induction_heads.check_induction_mask(lambda t: heads.head_masks(t)["induction"])
    with pytest.raises(AssertionError, match="mask is wrong"):
        induction_heads.check_induction_mask(lambda t: heads.head_masks(t)["duplicate_token"])
    with pytest.raises(AssertionError, match="mask is wrong"):  # src < dest forgotten
        induction_heads.check_induction_mask(
            lambda t: torch.nn.functional.pad((t[:, :, None] == t[:, None, :])[:, :, :-1], (1, 0))
        )
    induction_heads.check_composition_score(lambda a, b: (a @ b).norm() / a.norm() / b.norm())
    with pytest.raises(AssertionError, match="expected"):
        induction_heads.check_composition_score(lambda a, b: (b @ a).norm())
    with pytest.raises(AssertionError, match="expected"):  # not normalised
        induction_heads.check_composition_score(lambda a, b: (a @ b).norm())


def _topk(pre, k):
    return sae.SAE(sae.SAEConfig(d_in=1, d_sae=pre.shape[-1], k=k)).activate(pre)


def test_notebook_04_checks():
    sparse_autoencoders.check_topk(_topk)
    with pytest.raises(AssertionError, match="ReLU"):  # kept values not passed through the ReLU
        sparse_autoencoders.check_topk(
            lambda pre, k: torch.zeros_like(pre).scatter(-1, pre.topk(k).indices, pre.topk(k).values)
        )
    with pytest.raises(AssertionError, match="ReLU"):  # the k smallest
        sparse_autoencoders.check_topk(lambda pre, k: -_topk(-pre, k))
    with pytest.raises(AssertionError, match="ReLU"):  # every positive entry kept (a plain ReLU)
        sparse_autoencoders.check_topk(lambda pre, k: torch.relu(pre))
    sparse_autoencoders.check_mmcs(lambda dec, true: sae_metrics.feature_recovery(dec, true)["mmcs"])
    with pytest.raises(AssertionError, match="sign-flipped"):
        sparse_autoencoders.check_mmcs(lambda dec, true: sae_metrics.feature_recovery(dec.abs(), true)["mmcs"])
    with pytest.raises(AssertionError, match="per true feature"):  # the mean over decoder rows
        sparse_autoencoders.check_mmcs(lambda dec, true: sae_metrics.feature_recovery(true, dec)["mmcs"])
    with pytest.raises(AssertionError, match="rescaled"):  # dot products, not cosines
        sparse_autoencoders.check_mmcs(lambda dec, true: (true @ dec.T).max(dim=1).values.mean().item())


def test_notebook_05_checks():
    circuit_tracing.check_influence(graph.influence)
    with pytest.raises(AssertionError, match="paths of every length"):  # direct edges only
        circuit_tracing.check_influence(lambda A, w: w @ A)
    with pytest.raises(AssertionError, match="paths of every length"):  # the logits' own weight counted too
        circuit_tracing.check_influence(lambda A, w: w + graph.influence(A, w))
    with pytest.raises(AssertionError, match="paths of every length"):  # the wrong axis: A w, not w A
        circuit_tracing.check_influence(lambda A, w: graph.influence(A.T, w))
    circuit_tracing.check_threshold(graph.threshold)

    def one_too_far(scores, fraction):
        ordered = scores.sort(descending=True).values
        i = int(torch.searchsorted(ordered.cumsum(0) / ordered.sum(), fraction)) + 1
        return ordered[min(i, len(ordered) - 1)]

    with pytest.raises(AssertionError, match="keep scores until the share reaches"):
        circuit_tracing.check_threshold(one_too_far)
    with pytest.raises(AssertionError, match="keep scores until the share reaches"):  # sorted the wrong way
        circuit_tracing.check_threshold(lambda s, f: graph.threshold(-s, f).neg())

    def raw_sums(scores, fraction):  # cumulative sums not divided by the total
        ordered = scores.sort(descending=True).values
        return ordered[min(int(torch.searchsorted(ordered.cumsum(0), fraction)), len(ordered) - 1)]

    with pytest.raises(AssertionError, match="divided by the total"):
        circuit_tracing.check_threshold(raw_sums)


def _every_check():
    for module in (
        toy_checks,
        induction_heads,
        ioi_checks,
        sparse_autoencoders,
        circuit_tracing,
        circuit_discovery,
        probes_steering,
    ):
        for name in dir(module):
            if name.startswith("check_"):
                yield getattr(module, name)


@pytest.fixture(scope="module")
def notebook_objects(bundled_model):
    """What notebook 05's checks take besides the model: its transcoders and a graph (untrained ones will do)."""
    from test_attribution import PROMPT, make_transcoders

    from interp_utils.tracing.attribution import attribute

    tcs = make_transcoders(bundled_model)
    return {"model": bundled_model, "transcoders": tcs, "graph": attribute(bundled_model, tcs, PROMPT, progress=False)}


@pytest.mark.parametrize("check", list(_every_check()), ids=lambda c: c.__name__)
def test_a_stub_is_not_answered_yet_rather_than_a_traceback(check, notebook_objects):
    def my_answer(*args, **kwargs):
        raise NotImplementedError("Exercise: replace this line with your answer")

    # a check's other arguments: the notebook's model, transcoders or graph, or more of the learner's functions
    names = list(inspect.signature(check).parameters)[1:]
    extra = [notebook_objects.get(name, my_answer) for name in names]
    with pytest.raises(NotAnswered, match="my_answer: not answered yet"):
        check(my_answer, *extra)


def test_notebook_02_checks_of_scores_and_training():
    masks = heads.head_masks
    induction_heads.check_previous_token_mask(lambda t: masks(t)["previous_token"])
    with pytest.raises(AssertionError, match="src = dest - 1"):  # the next token
        induction_heads.check_previous_token_mask(lambda t: masks(t)["previous_token"].transpose(1, 2))
    with pytest.raises(AssertionError, match="exactly one source"):  # every earlier token
        induction_heads.check_previous_token_mask(lambda t: torch.ones(*t.shape, t.shape[1]).tril(-1).bool())
    induction_heads.check_duplicate_token_mask(lambda t: masks(t)["duplicate_token"])
    with pytest.raises(AssertionError, match="not the token itself"):  # the diagonal included
        induction_heads.check_duplicate_token_mask(
            lambda t: (t[:, :, None] == t[:, None, :]) & torch.ones(6, 6).tril().bool()
        )
    with pytest.raises(AssertionError, match="src < dest"):  # later copies too
        induction_heads.check_duplicate_token_mask(
            lambda t: (t[:, :, None] == t[:, None, :]) & ~torch.eye(t.shape[1]).bool()
        )
    induction_heads.check_attn_only_config(heads.attn_only_config)

    def with_mlps(*args):
        cfg = heads.attn_only_config(*args)
        cfg.attn_only = False
        return cfg

    with pytest.raises(AssertionError, match="attn_only = False"):
        induction_heads.check_attn_only_config(with_mlps)
    with pytest.raises(AssertionError, match="n_heads = 1"):  # one wide head
        induction_heads.check_attn_only_config(
            lambda n, v, s, d: HookedTransformerConfig(
                n_layers=2,
                d_model=64,
                n_heads=1,
                d_head=64,
                n_ctx=n,
                d_vocab=v,
                attn_only=True,
                normalization_type="LN",
            )
        )
    induction_heads.check_icl_score(lambda loss: heads.icl_score(loss, slice(1, 10), slice(-10, None)))
    with pytest.raises(AssertionError, match="check the sign"):
        induction_heads.check_icl_score(lambda loss: heads.icl_score(loss, slice(-10, None), slice(1, 10)))
    with pytest.raises(AssertionError, match="starts at 1, not 0"):
        induction_heads.check_icl_score(lambda loss: heads.icl_score(loss, slice(0, 10), slice(-10, None)))


def test_notebook_02_checks_of_circuits():
    induction_heads.check_full_ov_circuit(heads.full_ov_circuit)
    with pytest.raises(AssertionError, match="shape"):  # the unembedding forgotten
        induction_heads.check_full_ov_circuit(lambda m, layer, h: m.W_E @ m.W_V[layer, h] @ m.W_O[layer, h])
    with pytest.raises(AssertionError, match="check the order"):  # queries instead of values
        induction_heads.check_full_ov_circuit(lambda m, layer, h: m.W_E @ m.W_Q[layer, h] @ m.W_O[layer, h] @ m.W_U)
    induction_heads.check_top1_copying(heads.top1_copying)
    with pytest.raises(AssertionError, match="not down the columns"):
        induction_heads.check_top1_copying(lambda ov: (ov.argmax(0) == torch.arange(len(ov))).float().mean().item())
    with pytest.raises(AssertionError, match="2/3"):  # a positive diagonal is not a first place
        induction_heads.check_top1_copying(lambda ov: (ov.diagonal() > 0).float().mean().item())
    induction_heads.check_positional_qk(heads.positional_qk)
    with pytest.raises(AssertionError, match="Transposed"):
        induction_heads.check_positional_qk(lambda m, layer, h: heads.positional_qk(m, layer, h).T)
    with pytest.raises(AssertionError, match="check the scale"):
        induction_heads.check_positional_qk(lambda m, layer, h: heads.positional_qk(m, layer, h) * m.cfg.d_head**0.5)

    def every_head(k_input, hook, output, receiver):
        return k_input - output[:, :, None]

    def added(k_input, hook, output, receiver):
        k_input[:, :, receiver] += output
        return k_input

    induction_heads.check_remove_from_keys(heads.remove_from_keys)
    for wrong in (every_head, added):
        with pytest.raises(AssertionError, match="other heads' keys"):
            induction_heads.check_remove_from_keys(wrong)
