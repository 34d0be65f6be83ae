"""Notebook 03's checks pass the reference answers and reject plausible wrong ones with the message meant for them."""

from collections import defaultdict
from functools import partial

import pytest
import torch

from interp_utils import dla, hooks, ioi, ioi_circuit, patching
from interp_utils.circuits.heads import copying_score
from interp_utils.circuits.patching import Patch
from interp_utils.course.checks import ioi as checks


def test_logit_diff_and_normalised_checks():
    checks.check_logit_diff(ioi.logit_diff)
    with pytest.raises(AssertionError, match="positions\\['end'\\]"):  # the last column, padding included
        checks.check_logit_diff(
            lambda lg, b: lg[:, -1].gather(1, b.io[:, None])[:, 0] - lg[:, -1].gather(1, b.s[:, None])[:, 0]
        )
    with pytest.raises(AssertionError, match="sign is reversed"):
        checks.check_logit_diff(lambda lg, b: -ioi.logit_diff(lg, b))
    with pytest.raises(AssertionError, match="one value per prompt"):  # the mean over prompts already
        checks.check_logit_diff(lambda lg, b: ioi.logit_diff(lg, b).mean())
    checks.check_normalised_logit_diff(ioi.normalised_logit_diff)
    with pytest.raises(AssertionError, match="Subtract the corrupted"):
        checks.check_normalised_logit_diff(lambda lg, b, c, k: (ioi.logit_diff(lg, b) - k) / c)
    with pytest.raises(AssertionError, match="Subtract the corrupted"):
        checks.check_normalised_logit_diff(lambda lg, b, c, k: (c - ioi.logit_diff(lg, b)) / (c - k))
    with pytest.raises(AssertionError, match="one value per prompt"):
        checks.check_normalised_logit_diff(lambda lg, b, c, k: ioi.normalised_logit_diff(lg, b, c, k).mean())


def _layer_effects(model, cache, batch, scale=True, at_end=True, pos_embed=True):
    """dla.layer_direct_effects with the two usual mistakes available: no LayerNorm scale, the last column."""
    rows = torch.arange(len(batch))
    end = batch.positions["end"] if at_end else torch.full((len(batch),), batch.tokens.shape[1] - 1)
    unit = (model.W_U[:, batch.io] - model.W_U[:, batch.s]).T.detach()
    if scale:
        unit = unit / cache[hooks.name("ln_final_scale")][rows, end]
    names = {"embed": [hooks.name("embed")] + ([hooks.name("pos_embed")] if pos_embed else [])}
    for layer in range(model.cfg.n_layers):
        names[f"attn {layer}"] = [hooks.name("attn_out", layer)]
        names[f"mlp {layer}"] = [hooks.name("mlp_out", layer)]
    return {k: sum((cache[n][rows, end] * unit).sum(-1).mean().item() for n in ns) for k, ns in names.items()}


def test_direct_logit_attribution_checks(bundled_model):
    checks.check_layer_direct_effects(dla.layer_direct_effects, bundled_model)
    checks.check_layer_direct_effects(_layer_effects, bundled_model)  # the test's own version is right
    with pytest.raises(AssertionError, match="LayerNorm's scale"):
        checks.check_layer_direct_effects(lambda m, c, b: _layer_effects(m, c, b, scale=False), bundled_model)
    with pytest.raises(AssertionError, match="positions\\['end'\\]"):
        checks.check_layer_direct_effects(lambda m, c, b: _layer_effects(m, c, b, at_end=False), bundled_model)
    with pytest.raises(AssertionError, match="add the position embeddings"):
        checks.check_layer_direct_effects(lambda m, c, b: _layer_effects(m, c, b, pos_embed=False), bundled_model)
    checks.check_head_direct_effects(dla.head_direct_effects, bundled_model)

    def with_bias(m, c, b):  # each head given a share of b_O
        return dla.head_direct_effects(m, c, b) + 0.1

    with pytest.raises(AssertionError, match="no bias"):
        checks.check_head_direct_effects(with_bias, bundled_model)
    with pytest.raises(AssertionError, match="shape"):
        checks.check_head_direct_effects(lambda m, c, b: dla.head_direct_effects(m, c, b).T[:2], bundled_model)

    def unscaled(model, cache, batch):  # the final LayerNorm's scale left out
        rows, end = torch.arange(len(batch)), batch.positions["end"]
        unit = (model.W_U[:, batch.io] - model.W_U[:, batch.s]).T.detach()
        z = [cache[hooks.name("z", layer)][rows, end] for layer in range(model.cfg.n_layers)]
        out = [
            (torch.einsum("bhd,hdm->bhm", zl, model.W_O[i]) * unit[:, None]).sum(-1).mean(0) for i, zl in enumerate(z)
        ]
        return torch.stack(out).detach()

    with pytest.raises(AssertionError, match="LayerNorm's scale"):
        checks.check_head_direct_effects(unscaled, bundled_model)


def _sweep_one(model, tokens, cache, patch, metric, positions=None):
    return patching.patch_sweep(model, tokens, cache, [patch], metric, positions).item()


def test_activation_patching_checks(bundled_model):
    def resid(model, tokens, cache, layer, pos, positions, metric):
        return _sweep_one(model, tokens, cache, Patch(hooks.name("resid_pre", layer), pos), metric, positions)

    checks.check_patch_resid(resid, bundled_model)
    with pytest.raises(AssertionError, match="own position"):  # every position patched
        checks.check_patch_resid(lambda m, t, c, layer, pos, p, f: resid(m, t, c, layer, None, p, f), bundled_model)
    first_prompts = {"S2", "end", "IO"}

    def first_prompts_position(m, t, c, layer, pos, p, f):  # prompt 0's position used for every prompt
        same = {k: v[:1].expand_as(v) if k in first_prompts else v for k, v in p.items()}
        return resid(m, t, c, layer, pos, same, f)

    with pytest.raises(AssertionError, match="own position"):
        checks.check_patch_resid(first_prompts_position, bundled_model)

    def per_prompt(model, tokens, cache, layer, pos, positions, metric):  # the metric of each prompt, no mean
        patch = Patch(hooks.name("resid_pre", layer), pos)
        return torch.full((len(tokens),), _sweep_one(model, tokens, cache, patch, metric, positions))

    with pytest.raises(AssertionError, match="Python float"):
        checks.check_patch_resid(per_prompt, bundled_model)

    def outputs(model, tokens, cache, kind, metric):
        patches = [Patch(hooks.name(kind, layer)) for layer in range(model.cfg.n_layers)]
        return patching.patch_sweep(model, tokens, cache, patches, metric)

    checks.check_patch_layer_outputs(outputs, bundled_model)
    with pytest.raises(AssertionError, match="One run per layer"):  # the layer's residual stream instead
        checks.check_patch_layer_outputs(lambda m, t, c, k, f: outputs(m, t, c, "resid_post", f), bundled_model)
    with pytest.raises(AssertionError, match="one value per layer"):
        checks.check_patch_layer_outputs(lambda m, t, c, k, f: outputs(m, t, c, k, f).mean(), bundled_model)
    with pytest.raises(AssertionError, match="One run per layer"):  # `kind` ignored: always the attention output
        checks.check_patch_layer_outputs(lambda m, t, c, k, f: outputs(m, t, c, "attn_out", f), bundled_model)

    def head(model, tokens, cache, layer, h, metric, pos=None, positions=None):
        return _sweep_one(model, tokens, cache, Patch(hooks.name("z", layer), pos, h), metric, positions)

    checks.check_patch_head(head, bundled_model)
    with pytest.raises(AssertionError, match="leaving the other heads"):  # the whole layer
        checks.check_patch_head(
            lambda m, t, c, layer, h, f, pos=None, p=None: _sweep_one(
                m, t, c, Patch(hooks.name("z", layer), pos), f, p
            ),
            bundled_model,
        )
    with pytest.raises(AssertionError, match="positions\\[pos\\]"):  # the position ignored
        checks.check_patch_head(
            lambda m, t, c, layer, h, f, pos=None, p=None: head(m, t, c, layer, h, f), bundled_model
        )
    with pytest.raises(AssertionError, match="Python float"):
        checks.check_patch_head(lambda *a: torch.tensor([head(*a), 0.0]), bundled_model)


def test_path_patching_checks(bundled_model):
    def to_logits(model, tokens, clean, corrupt, sender, metric):
        return patching.path_patch_heads(model, tokens, clean, corrupt, [sender], metric).item()

    checks.check_path_patch_to_logits(to_logits, bundled_model)

    def unfrozen(model, tokens, clean, corrupt, sender, metric):  # activation patching of the sender
        return _sweep_one(model, tokens, corrupt, Patch(hooks.name("z", sender[0]), None, sender[1]), metric)

    with pytest.raises(AssertionError, match="Freeze every other head"):
        checks.check_path_patch_to_logits(unfrozen, bundled_model)
    with pytest.raises(AssertionError, match="comes from corrupt_cache"):  # everything clean: no change at all
        checks.check_path_patch_to_logits(lambda m, t, c, k, s, f: to_logits(m, t, c, c, s, f), bundled_model)

    def whole_sender_layer(model, tokens, clean, corrupt, sender, metric):  # every head of the sender's layer
        def freeze(z, hook):
            z[:] = (corrupt if hook.layer() == sender[0] else clean)[hook.name]
            return z

        frozen = [(hooks.name("z", layer), freeze) for layer in range(model.cfg.n_layers)]
        with torch.inference_mode():
            return metric(model.run_with_hooks(tokens, fwd_hooks=frozen)).mean().item()

    with pytest.raises(AssertionError, match="except the sender's"):
        checks.check_path_patch_to_logits(whole_sender_layer, bundled_model)

    def inputs(model, tokens, clean, corrupt, sender, layer, mode):
        return patching.receiver_inputs(model, tokens, clean, corrupt, [sender], [layer], mode)[hooks.name(mode, layer)]

    checks.check_receiver_inputs(inputs, bundled_model)
    with pytest.raises(AssertionError, match="must come from corrupt_cache"):
        checks.check_receiver_inputs(
            lambda m, t, c, k, s, layer, mode: inputs(m, t, c, c, s, layer, mode), bundled_model
        )

    def only_sender(model, tokens, clean, corrupt, sender, layer, mode):  # nothing frozen: later heads recompute
        saved = {}

        def corrupt_sender(z, hook):
            z[:, :, sender[1]] = corrupt[hook.name][:, :, sender[1]]
            return z

        def save(act, hook):
            saved["x"] = act.clone()

        model.run_with_hooks(
            tokens, fwd_hooks=[(hooks.name("z", sender[0]), corrupt_sender), (hooks.name(mode, layer), save)]
        )
        return saved["x"]

    with pytest.raises(AssertionError, match="Freeze every head"):
        checks.check_receiver_inputs(only_sender, bundled_model)
    with pytest.raises(AssertionError, match="differs from the reference"):  # always the queries
        checks.check_receiver_inputs(
            lambda m, t, c, k, s, layer, mode: inputs(m, t, c, k, s, layer, "q"), bundled_model
        )

    def to_receivers(model, tokens, clean, corrupt, sender, receivers, mode, metric):
        return patching.path_patch_heads(model, tokens, clean, corrupt, [sender], metric, receivers, mode).item()

    checks.check_path_patch_to_receivers(to_receivers, bundled_model)

    def whole_layer(model, tokens, clean, corrupt, sender, receivers, mode, metric):
        every = [(layer, h) for layer in {r[0] for r in receivers} for h in range(model.cfg.n_heads)]
        return to_receivers(model, tokens, clean, corrupt, sender, every, mode, metric)

    with pytest.raises(AssertionError, match="only the receivers' heads"):
        checks.check_path_patch_to_receivers(whole_layer, bundled_model)
    with pytest.raises(AssertionError, match="only the receivers' heads"):  # always the queries
        checks.check_path_patch_to_receivers(
            lambda m, t, c, k, s, r, mode, f: to_receivers(m, t, c, k, s, r, "q", f), bundled_model
        )
    with pytest.raises(AssertionError, match="Rerun the clean tokens"):  # the frozen run's own metric, no second run
        checks.check_path_patch_to_receivers(
            lambda m, t, c, k, s, r, mode, f: to_logits(m, t, c, k, s, f), bundled_model
        )


def test_copying_ablation_faithfulness_and_attribution_checks(bundled_model):
    checks.check_copying_score(copying_score, bundled_model)

    def without_mlp0(model, layer, head, tokens, k=5, negative=False):
        out = model.W_E[tokens][:, None] @ model.W_V[layer, head] @ model.W_O[layer, head]
        logits = model.unembed(model.ln_final(-out if negative else out))[:, 0]
        return (logits.topk(k, -1).indices == tokens[:, None]).any(-1).float().mean().item()

    with pytest.raises(AssertionError, match="MLP 0"):
        checks.check_copying_score(without_mlp0, bundled_model)
    with pytest.raises(AssertionError, match="negated"):
        checks.check_copying_score(
            lambda m, layer, h, t, k=5, negative=False: copying_score(m, layer, h, t, k), bundled_model
        )

    with pytest.raises(AssertionError, match="top 5"):  # k ignored: the top logit only
        checks.check_copying_score(
            lambda m, layer, h, t, k=5, negative=False: copying_score(m, layer, h, t, 1, negative), bundled_model
        )

    checks.check_ablate_except(patching.ablate_except)
    with pytest.raises(AssertionError, match="own position"):
        checks.check_ablate_except(
            lambda z, means, keep: patching.ablate_except(
                z, means, [(h, p if p is None else p[:1].expand(2)) for h, p in keep]
            )
        )
    with pytest.raises(AssertionError, match="own position"):  # kept heads kept at every position
        checks.check_ablate_except(
            lambda z, means, keep: patching.ablate_except(z, means, [(h, None) for h, _ in keep])
        )
    with pytest.raises(AssertionError, match="should survive"):  # the other way round: the kept entries ablated
        checks.check_ablate_except(lambda z, means, keep: z + means - patching.ablate_except(z, means, keep))

    def faithfulness(model, batch, fwd_hooks):
        with torch.inference_mode():
            circuit = ioi.logit_diff(model.run_with_hooks(batch.tokens, fwd_hooks=fwd_hooks), batch)
            full = ioi.logit_diff(model(batch.tokens), batch)
        return circuit.mean().item() / full.mean().item()

    checks.check_faithfulness(faithfulness, bundled_model)

    def mean_of_ratios(model, batch, fwd_hooks):
        with torch.inference_mode():
            circuit = ioi.logit_diff(model.run_with_hooks(batch.tokens, fwd_hooks=fwd_hooks), batch)
            return (circuit / ioi.logit_diff(model(batch.tokens), batch)).mean().item()

    with pytest.raises(AssertionError, match="mean of per-prompt ratios"):
        checks.check_faithfulness(mean_of_ratios, bundled_model)
    with pytest.raises(AssertionError, match="Run with the hooks"):
        checks.check_faithfulness(lambda m, b, h: faithfulness(m, b, []), bundled_model)
    with pytest.raises(AssertionError, match="Run with the hooks"):  # the full model over the circuit
        checks.check_faithfulness(lambda m, b, h: 1 / faithfulness(m, b, h), bundled_model)

    checks.check_attribution_patch_heads(patching.attribution_patch_heads, bundled_model)
    with pytest.raises(AssertionError, match="sign is reversed"):
        checks.check_attribution_patch_heads(lambda *a: -patching.attribution_patch_heads(*a), bundled_model)

    def summed(model, tokens, cache, metric):  # the gradient of the sum over prompts, not the mean
        return patching.attribution_patch_heads(model, tokens, cache, lambda lg: metric(lg) * len(tokens))

    with pytest.raises(AssertionError, match="mean metric"):
        checks.check_attribution_patch_heads(summed, bundled_model)

    def gradient_times_source(model, tokens, cache, metric):  # z_clean * grad: the corrupted z not subtracted
        corrupt_cache = model.run_with_cache(tokens)[1]
        shifted = {n: cache[n] + corrupt_cache[n] for n in cache.keys() if n.endswith("hook_z")}
        return patching.attribution_patch_heads(model, tokens, shifted, metric)

    with pytest.raises(AssertionError, match="z_clean - z"):
        checks.check_attribution_patch_heads(gradient_times_source, bundled_model)


def _attention(cache, batch, dest, src, own_positions=True, mean=True):
    """ioi_circuit.mean_attention with the usual mistakes available: prompt 0's positions for all, a sum."""
    rows = torch.arange(len(batch))
    at = {k: v if own_positions else v[:1].expand_as(v) for k, v in batch.positions.items()}
    out = []
    for layer in range(cache.model.cfg.n_layers):
        picked = cache[hooks.name("pattern", layer)][rows, :, at[dest], at[src]]
        out.append(picked.mean(0) if mean else picked.sum(0))
    return torch.stack(out).cpu()


def test_mean_attention_check(bundled_model):
    checks.check_mean_attention(ioi_circuit.mean_attention, bundled_model)
    checks.check_mean_attention(_attention, bundled_model)  # the test's own version is right
    with pytest.raises(AssertionError, match="query \\(destination\\) axis comes before"):
        checks.check_mean_attention(lambda c, b, d, s: _attention(c, b, s, d), bundled_model)
    with pytest.raises(AssertionError, match="own positions"):
        checks.check_mean_attention(lambda c, b, d, s: _attention(c, b, d, s, own_positions=False), bundled_model)
    with pytest.raises(AssertionError, match="average over prompts only"):
        checks.check_mean_attention(lambda c, b, d, s: _attention(c, b, d, s, mean=False), bundled_model)
    with pytest.raises(AssertionError, match="shape"):  # the heads averaged too
        checks.check_mean_attention(lambda c, b, d, s: _attention(c, b, d, s).mean(1), bundled_model)


def _ablation_hooks(model, cache, groups, keep, positions=None, by_group=True, at_positions=True, all_layers=True):
    """The mean-ablation hooks written out, with the usual mistakes available: one mean over every prompt, pairs
    kept at every position, layers with nothing kept left alone."""
    by_layer = defaultdict(list)
    for item in keep:
        pos = positions[item[2]] if len(item) == 3 and at_positions else None
        by_layer[item[0]].append((item[1], pos))
    out = []
    for layer in range(model.cfg.n_layers):
        if layer not in by_layer and not all_layers:
            continue
        reference = cache[hooks.name("z", layer)]
        means = torch.empty_like(reference)
        for g in groups.unique() if by_group else [None]:
            rows = torch.arange(len(groups)) if g is None else (groups == g).nonzero().flatten()
            means[rows] = reference[rows].mean(0, keepdim=True)
        out.append((hooks.name("z", layer), partial(lambda z, hook, m, k: patching.ablate_except(z, m, k), m=means,
                                                    k=by_layer[layer])))  # fmt: skip
    return out


def test_mean_ablation_hooks_check(bundled_model):
    checks.check_mean_ablation_hooks(patching.mean_ablation_hooks, bundled_model)
    checks.check_mean_ablation_hooks(_ablation_hooks, bundled_model)  # the test's own version is right
    with pytest.raises(AssertionError, match="own group only"):
        checks.check_mean_ablation_hooks(partial(_ablation_hooks, by_group=False), bundled_model)
    with pytest.raises(AssertionError, match="only at each prompt's positions"):
        checks.check_mean_ablation_hooks(partial(_ablation_hooks, at_positions=False), bundled_model)
    with pytest.raises(AssertionError, match="also those with nothing kept"):
        checks.check_mean_ablation_hooks(partial(_ablation_hooks, all_layers=False), bundled_model)
    with pytest.raises(AssertionError, match="list of \\(hook name, hook function\\) pairs"):
        checks.check_mean_ablation_hooks(lambda *a: dict(_ablation_hooks(*a)), bundled_model)
