"""Every exercise check passes the reference answer and rejects plausible wrong ones with the message aimed at them."""

import pytest
import torch

from interp_utils import graph, heads, sae, superposition
from interp_utils.checks import circuit_tracing, induction_heads, sparse_autoencoders
from interp_utils.checks import superposition as toy_checks


def _dimensionality(W, clamp=True):
    unit = W / W.norm(dim=1, keepdim=True).clamp_min(1e-8)
    overlaps = torch.einsum("ihf,ihg->ifg", unit, W).pow(2).sum(-1)
    return W.pow(2).sum(1) / (overlaps.clamp_min(1e-8) if clamp else overlaps)


def _phase(W):
    represented = W.norm(dim=1) > 0.5
    return torch.where(represented.all(-1), 2, torch.where(represented[:, 1], 1, 0))


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
    toy_checks.check_classify_phase(_phase)
    with pytest.raises(AssertionError, match="expected labels"):
        toy_checks.check_classify_phase(lambda W: torch.zeros(W.shape[0], dtype=torch.long))
    with pytest.raises(AssertionError, match="expected labels"):  # 1 and 2 swapped
        toy_checks.check_classify_phase(lambda W: (3 - _phase(W)) % 3)


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

    def right(z, hook, head):
        z[:, :, head] = 0.0
        return z

    def wrong_axis(z, hook, head):
        z[:, head] = 0.0
        return z

    def every_head(z, hook, head):
        return torch.zeros_like(z)

    induction_heads.check_zero_ablation_hook(right)
    for wrong in (wrong_axis, every_head):
        with pytest.raises(AssertionError, match="head axis"):
            induction_heads.check_zero_ablation_hook(wrong)


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
    sparse_autoencoders.check_mmcs(lambda dec, true: sae.feature_recovery(dec, true)["mmcs"])
    with pytest.raises(AssertionError, match="sign-flipped"):
        sparse_autoencoders.check_mmcs(lambda dec, true: sae.feature_recovery(dec.abs(), true)["mmcs"])
    with pytest.raises(AssertionError, match="per true feature"):  # the mean over decoder rows
        sparse_autoencoders.check_mmcs(lambda dec, true: sae.feature_recovery(true, dec)["mmcs"])
    sparse_autoencoders.check_explained_variance(
        lambda x, x_hat: (1 - (x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum()).item()
    )
    with pytest.raises(AssertionError, match="the mean"):  # against zero, not the mean
        sparse_autoencoders.check_explained_variance(lambda x, x_hat: 1 - (x - x_hat).pow(2).sum() / x.pow(2).sum())
    with pytest.raises(AssertionError, match="deviation from the mean"):  # the mean of a per-dimension ratio
        sparse_autoencoders.check_explained_variance(
            lambda x, x_hat: (1 - ((x - x_hat).pow(2).sum(0) / (x - x.mean(0)).pow(2).sum(0)).mean()).item()
        )


def test_notebook_05_checks():
    circuit_tracing.check_influence(graph.influence)
    with pytest.raises(AssertionError, match="paths of every length"):  # direct edges only
        circuit_tracing.check_influence(lambda A, w: w @ A)
    with pytest.raises(AssertionError, match="paths of every length"):  # the logits' own weight counted too
        circuit_tracing.check_influence(lambda A, w: w + graph.influence(A, w))
    circuit_tracing.check_threshold(graph.threshold)

    def one_too_far(scores, fraction):
        ordered = scores.sort(descending=True).values
        i = int(torch.searchsorted(ordered.cumsum(0) / ordered.sum(), fraction)) + 1
        return ordered[min(i, len(ordered) - 1)]

    with pytest.raises(AssertionError, match="keep scores until the share reaches"):
        circuit_tracing.check_threshold(one_too_far)
    with pytest.raises(AssertionError, match="keep scores until the share reaches"):  # sorted the wrong way
        circuit_tracing.check_threshold(lambda s, f: graph.threshold(-s, f).neg())
