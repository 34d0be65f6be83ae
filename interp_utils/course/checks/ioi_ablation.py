"""Checks for notebook 03's section 8 and 9 exercises: mean ablation outside (head, position) pairs, the hooks that
apply it, faithfulness, and attribution patching (re-exported by ``checks.ioi``)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from transformer_lens import HookedTransformer

from interp_utils.circuits import patching
from interp_utils.core import hooks
from interp_utils.course.checks import answered, close
from interp_utils.course.checks.ioi_cases import as_float as _float
from interp_utils.course.checks.ioi_cases import case_for as _case
from interp_utils.course.checks.ioi_cases import shaped as _shaped
from interp_utils.data import ioi


@answered
def check_ablate_except(fn: Callable[..., Tensor]) -> None:
    """A hand-made z (2 prompts, 4 positions, 3 heads): head 1 kept at one position per prompt, head 2 everywhere."""
    g = torch.Generator().manual_seed(0)
    z, means = torch.randn(2, 4, 3, 2, generator=g), torch.zeros(2, 4, 3, 2)
    keep = [(1, torch.tensor([2, 0])), (2, None)]
    want = patching.ablate_except(z, means, keep)
    got = fn(z.clone(), means, keep)
    got = _shaped(got, z.shape, "a tensor shaped like z")
    kept = (got != 0).any(-1)  # [batch, pos, head]: where z survived
    if not torch.equal(kept, (want != 0).any(-1)):
        raise AssertionError(
            "With means = 0, z should survive at head 1 only at position 2 of prompt 0 and position 0 of prompt 1, "
            f"and at head 2 everywhere; it survives at [batch, pos, head] = {kept.nonzero().tolist()}. Each prompt "
            "keeps its own position pos[b]; everything not kept takes the mean."
        )
    if not torch.allclose(got, want):
        raise AssertionError("The kept entries must be z's own values, and all others the means.")
    print("mean ablation outside (head, position) pairs: correct.")


@answered
def check_faithfulness(fn: Callable[..., float], model: HookedTransformer) -> None:
    """Faithfulness with no hooks (1), with the last layer's heads mean-ablated, against the ratio of means."""
    case = _case(model)
    batch = case.batch
    got = _float(fn(model, batch, []), "faithfulness")
    close(got, 1.0, "faithfulness with no ablation", "With no hooks the circuit is the whole model: the ratio is 1.")
    groups = torch.arange(len(batch))
    keep = [(layer, h) for layer in range(model.cfg.n_layers - 1) for h in range(model.cfg.n_heads)]
    fwd = patching.mean_ablation_hooks(model, case.corrupt_cache, groups * 0, keep)
    with torch.inference_mode():
        ablated = ioi.logit_diff(model.run_with_hooks(batch.tokens, fwd_hooks=fwd), batch)
        per_prompt = (ablated / ioi.logit_diff(model(batch.tokens), batch)).mean().item()
    want = ablated.mean().item() / case.clean
    got = _float(fn(model, batch, fwd), "faithfulness")
    if abs(got - per_prompt) < 1e-4 and abs(want - per_prompt) > 1e-3:
        raise AssertionError("That is the mean of per-prompt ratios; the paper divides the mean logit differences.")
    close(got, want, "faithfulness with the last layer's heads mean-ablated", "Run with the hooks, take the mean "
           "logit difference, and divide by the full model's mean logit difference.")  # fmt: skip
    print("faithfulness: correct.")


@answered
def check_attribution_patch_heads(fn: Callable[..., Tensor], model: HookedTransformer) -> None:
    """Attribution patching of every head, against ``patching.attribution_patch_heads``."""
    case = _case(model)
    want = patching.attribution_patch_heads(model, case.batch.corrupted, case.clean_cache, case.normalised)
    got = fn(model, case.batch.corrupted, case.clean_cache, case.normalised)
    got = _shaped(got, want.shape, "a [layer, head] tensor")
    got = got.detach().float().cpu()
    if torch.allclose(got, -want, atol=1e-4):
        raise AssertionError("The sign is reversed: the patch moves z from the corrupted run to the clean one.")
    if not torch.allclose(got, want, atol=1e-4, rtol=1e-3):
        ratio = (got.flatten() @ want.flatten() / want.flatten().pow(2).sum()).item()
        raise AssertionError(
            f"Expected {want.flatten()[:4].tolist()}..., got {got.flatten()[:4].tolist()}... (about {ratio:.2f}x). "
            "Backpropagate the mean metric over prompts, then sum (z_clean - z) * grad over batch, position and "
            "d_head for each head."
        )
    print("attribution patching: correct.")


def _ablated_diffs(model: HookedTransformer, tokens: Tensor, batch: ioi.IOIBatch, fwd: list) -> Tensor:
    with torch.inference_mode():
        return ioi.logit_diff(model.run_with_hooks(tokens, fwd_hooks=fwd), batch).float().cpu()


@answered
def check_mean_ablation_hooks(fn: Callable[..., list], model: HookedTransformer) -> None:
    """The hooks' run on a small batch (two groups of prompts; heads kept everywhere, at END and at S2), against
    ``patching.mean_ablation_hooks``, with the usual mistakes told apart by rerunning the reference made wrong."""
    case = _case(model)
    batch, cache, last, n_heads = case.batch, case.corrupt_cache, model.cfg.n_layers - 1, model.cfg.n_heads
    groups = torch.arange(len(batch)) % 2
    keep: list[patching.Kept] = [(last, 0), (0, n_heads - 1, "end"), (last, n_heads // 2, "S2")]
    everywhere: list[patching.Kept] = [(int(k[0]), int(k[1])) for k in keep]
    got_hooks = fn(model, cache, groups, keep, batch.positions)
    if not isinstance(got_hooks, list) or not all(isinstance(h, tuple) and len(h) == 2 for h in got_hooks):
        raise AssertionError("Return a list of (hook name, hook function) pairs, one per layer with heads to ablate.")
    got = _ablated_diffs(model, batch.tokens, batch, got_hooks)
    want = _ablated_diffs(
        model, batch.tokens, batch, patching.mean_ablation_hooks(model, cache, groups, keep, batch.positions)
    )
    if torch.allclose(got, want, atol=1e-4):
        print("mean-ablation hooks: correct.")
        return
    mean_hooks, kept_layers = patching.mean_ablation_hooks, {hooks.name("z", int(k[0])) for k in keep}
    mistakes = {  # the reference, made wrong in one way each, and what to look at then
        "The means are over all prompts: average each prompt's z over the prompts of its own group only "
        "(groups == g), position by position.": mean_hooks(model, cache, groups * 0, keep, batch.positions),
        "A (layer, head, pos) entry keeps the head only at each prompt's positions[pos], not at every position.": (
            mean_hooks(model, cache, groups, everywhere, batch.positions)
        ),
        "Ablate every layer, also those with nothing kept: a layer needs a hook unless all its heads are kept "
        "everywhere.": [h for h in mean_hooks(model, cache, groups, keep, batch.positions) if h[0] in kept_layers],
    }  # fmt: skip
    for message, wrong in mistakes.items():
        if torch.allclose(got, _ablated_diffs(model, batch.tokens, batch, wrong), atol=1e-4):
            raise AssertionError(message)
    raise AssertionError(
        f"Logit differences with your hooks {[round(v, 3) for v in got.tolist()]}, expected "
        f"{[round(v, 3) for v in want.tolist()]}. Each layer's hook replaces z by the group means of reference_cache "
        "outside the kept (head, position) pairs, with your ablate_except."
    )
