"""Checks for notebook 03's exercises (indirect object identification): hand-made cases, then a small IOI batch run
through the notebook's own model, compared with the suite's reference implementations. The checks of section 8
(mean ablation, faithfulness, attribution patching) live in ``ioi_ablation`` and are re-exported here."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from transformer_lens import HookedTransformer

from interp_utils.circuits import dla, patching
from interp_utils.circuits.heads import copying_score
from interp_utils.circuits.ioi_circuit import mean_attention
from interp_utils.circuits.patching import Patch
from interp_utils.core import hooks
from interp_utils.core.metrics import normalised_metric
from interp_utils.course.checks import answered, close, ioi_ablation
from interp_utils.course.checks.ioi_cases import as_float as _float
from interp_utils.course.checks.ioi_cases import case_for as _case
from interp_utils.course.checks.ioi_cases import hand_batch as _hand_batch
from interp_utils.course.checks.ioi_cases import shaped as _shaped
from interp_utils.data import ioi

# Section 8 and 9's checks (mean ablation, faithfulness, attribution patching), re-exported for the notebook.
check_ablate_except = ioi_ablation.check_ablate_except
check_mean_ablation_hooks = ioi_ablation.check_mean_ablation_hooks
check_faithfulness = ioi_ablation.check_faithfulness
check_attribution_patch_heads = ioi_ablation.check_attribution_patch_heads


@answered
def check_logit_diff(fn: Callable[[Tensor, ioi.IOIBatch], Tensor]) -> None:
    """A right-padded hand-made batch (the last column is padding for one prompt), then the notebook's model."""
    batch, logits = _hand_batch()
    want = torch.tensor([logits[0, 2, 1] - logits[0, 2, 4], logits[1, 3, 3] - logits[1, 3, 0]])
    got = fn(logits, batch)
    got = _shaped(got, (2,), "one value per prompt ([batch])")
    if torch.allclose(got, -want):
        raise AssertionError("The sign is reversed: the logit difference is logit(IO) - logit(S).")
    if not torch.allclose(got, want):
        raise AssertionError(
            f"On a hand-made batch (prompt 0 ends at position 2, prompt 1 at 3; IO = {batch.io.tolist()}, "
            f"S = {batch.s.tolist()}) expected {want.tolist()}, got {got.tolist()}. Read each prompt at its own "
            "batch.positions['end']: prompts are right-padded, so the last column is padding for shorter ones."
        )
    print("logit difference: correct.")


@answered
def check_normalised_logit_diff(fn: Callable[[Tensor, ioi.IOIBatch, float, float], Tensor]) -> None:
    """The hand-made batch at a few (clean, corrupt) pairs: 1 at the clean value, 0 at the corrupted one."""
    batch, logits = _hand_batch()
    diffs = ioi.logit_diff(logits, batch)
    for clean, corrupt in [(diffs.mean().item(), 0.0), (4.0, 1.0), (2.0, -3.0)]:
        want = normalised_metric(diffs, clean, corrupt)
        got = fn(logits, batch, clean, corrupt)
        got = _shaped(got, (2,), "one value per prompt ([batch])")
        if not torch.allclose(got.float(), want, atol=1e-5):
            raise AssertionError(
                f"With logit differences {diffs.tolist()}, clean = {clean:.2f} and corrupt = {corrupt:.2f} expected "
                f"{want.tolist()}, got {got.tolist()}. Subtract the corrupted value, then divide by clean - corrupt."
            )
    print("normalised logit difference: correct.")


@answered
def check_layer_direct_effects(fn: Callable[..., dict[str, float]], model: HookedTransformer) -> None:
    """Every component's direct effect on a small batch, against ``dla.layer_direct_effects``."""
    case = _case(model)
    want = dla.layer_direct_effects(model, case.clean_cache, case.batch)
    got = fn(model, case.clean_cache, case.batch)
    if not isinstance(got, dict) or set(got) != set(want):
        raise AssertionError(
            f"Return a dict with the keys {list(want)}, got {list(got) if isinstance(got, dict) else got}."
        )
    read, unit = dla._at_end(model, case.clean_cache, case.batch)
    pos_only = (read(hooks.name("pos_embed")) * unit).sum(-1).mean().item()
    if abs(float(got["embed"]) - want["embed"]) > 1e-3 and abs(float(got["embed"]) - (want["embed"] - pos_only)) < 1e-3:
        raise AssertionError(
            f"'embed': got {float(got['embed']):.4f}, the token embeddings' share alone; add the position embeddings' "
            f"(hooks.name('pos_embed')) to reach {want['embed']:.4f}."
        )
    for key, value in want.items():
        close(
            float(got[key]),
            value,
            f"direct effect of {key!r}",
            "Read each component at batch.positions['end'], divide the IO-minus-S unembedding by the final "
            "LayerNorm's scale (hooks.name('ln_final_scale')) at that position, and average over prompts.",
        )
    print("direct effects by layer: correct.")


@answered
def check_head_direct_effects(fn: Callable[..., Tensor], model: HookedTransformer) -> None:
    """Every head's direct effect on a small batch, against ``dla.head_direct_effects``."""
    case = _case(model)
    want = dla.head_direct_effects(model, case.clean_cache, case.batch)
    got = fn(model, case.clean_cache, case.batch)
    got = _shaped(got, want.shape, "a [layer, head] tensor")
    if not torch.allclose(got.float().cpu(), want, atol=1e-3, rtol=1e-3):
        worst = divmod(int((got.float().cpu() - want).abs().argmax()), want.shape[1])
        raise AssertionError(
            f"Head {worst[0]}.{worst[1]}: expected {want[worst]:.4f}, got {got[worst]:.4f}. A head writes "
            "z[:, end, head] @ W_O[layer, head] (no bias: b_O belongs to the layer, not a head); project it as in "
            "the layer exercise, through the final LayerNorm's scale."
        )
    print("direct effects by head: correct.")


@answered
def check_patch_resid(fn: Callable[..., float], model: HookedTransformer) -> None:
    """One residual-stream patch at a named position, three ways, against ``patching.patch_sweep``."""
    case = _case(model)
    last = model.cfg.n_layers - 1
    for layer, pos in [(0, "S2"), (last, "end"), (min(1, last), "IO")]:
        patch = Patch(hooks.name("resid_pre", layer), pos)
        want = patching.patch_sweep(
            model, case.batch.corrupted, case.clean_cache, [patch], case.normalised, case.batch.positions
        ).item()
        got = _float(
            fn(model, case.batch.corrupted, case.clean_cache, layer, pos, case.batch.positions, case.normalised),
            "patch_resid",
        )
        close(
            got,
            want,
            f"patching resid_pre {layer} at {pos}",
            "Overwrite only each prompt's own position positions[pos][b] (rows = torch.arange(batch)), run the "
            "corrupted tokens, and return the mean of the metric.",
        )
    print("residual-stream patching: correct.")


@answered
def check_patch_layer_outputs(fn: Callable[..., Tensor], model: HookedTransformer) -> None:
    """Every layer's attention or MLP output patched at all positions, against ``patching.patch_sweep``."""
    case = _case(model)
    for kind in ("attn_out", "mlp_out"):
        patches = [Patch(hooks.name(kind, layer)) for layer in range(model.cfg.n_layers)]
        want = patching.patch_sweep(model, case.batch.corrupted, case.clean_cache, patches, case.normalised)
        got = fn(model, case.batch.corrupted, case.clean_cache, kind, case.normalised)
        got = _shaped(got, want.shape, "one value per layer")
        if not torch.allclose(got.float().cpu(), want, atol=1e-3):
            raise AssertionError(
                f"{kind}: expected {[round(v, 3) for v in want.tolist()]}, got {[round(v, 3) for v in got.tolist()]}. "
                f"One run per layer, each replacing hooks.name({kind!r}, layer) with the clean activation."
            )
    print("attention and MLP output patching: correct.")


@answered
def check_patch_head(fn: Callable[..., float], model: HookedTransformer) -> None:
    """One head's output patched at all positions and at one position, against ``patching.patch_sweep``."""
    case = _case(model)
    last, heads_ = model.cfg.n_layers - 1, model.cfg.n_heads
    for layer, head, pos in [(last, heads_ - 1, None), (last, 0, "end"), (0, heads_ // 2, "S2")]:
        patch = Patch(hooks.name("z", layer), pos, head)
        want = patching.patch_sweep(
            model, case.batch.corrupted, case.clean_cache, [patch], case.normalised, case.batch.positions
        ).item()
        got = _float(
            fn(model, case.batch.corrupted, case.clean_cache, layer, head, case.normalised, pos, case.batch.positions),
            "patch_head",
        )
        close(
            got,
            want,
            f"patching head {layer}.{head} at {pos or 'every position'}",
            "hook z is [batch, pos, head, d_head]: overwrite z[:, :, head] (or z[rows, positions[pos], head]), "
            "leaving the other heads alone.",
        )
    print("head patching: correct.")


def _senders(model: HookedTransformer) -> list[tuple[int, int]]:
    return [(model.cfg.n_layers - 1, 0), (0, model.cfg.n_heads - 1)]


@answered
def check_path_patch_to_logits(fn: Callable[..., float], model: HookedTransformer) -> None:
    """Two senders' direct paths to the logits, against ``patching.path_patch_heads``."""
    case = _case(model)
    for sender in _senders(model):
        args = (model, case.batch.tokens, case.clean_cache, case.corrupt_cache)
        want = patching.path_patch_heads(*args, [sender], case.change).item()
        got = _float(fn(*args, sender, case.change), "path_patch_to_logits")
        unfrozen = patching.patch_sweep(
            model,
            case.batch.tokens,
            case.corrupt_cache,
            [Patch(hooks.name("z", sender[0]), None, sender[1])],
            case.change,
        ).item()
        if abs(got - want) > 1e-3 and abs(got - unfrozen) < 1e-4:
            raise AssertionError(
                f"Sender {sender[0]}.{sender[1]}: {got:.4f} is the total effect of patching the head (activation "
                f"patching), not its direct path ({want:.4f}). Freeze every other head's z at its clean value."
            )
        close(got, want, f"sender {sender[0]}.{sender[1]}", "Run the clean tokens with every z from clean_cache "
               "except the sender's, which comes from corrupt_cache; MLPs recompute.")  # fmt: skip
    print("path patching to the logits: correct.")


@answered
def check_receiver_inputs(fn: Callable[..., Tensor], model: HookedTransformer) -> None:
    """The receivers' q, k and v in path patching's first run, against ``patching.receiver_inputs``."""
    case = _case(model)
    args = (model, case.batch.tokens, case.clean_cache, case.corrupt_cache)
    sender, layer = (0, model.cfg.n_heads - 1), model.cfg.n_layers - 1
    for mode in ("q", "k", "v"):
        name = hooks.name(mode, layer)
        want = patching.receiver_inputs(*args, [sender], [layer], mode)[name].cpu()
        got = fn(*args, sender, layer, mode)
        got = _shaped(got, want.shape, f"the {mode} of every head at layer {layer}")
        got = got.float().cpu()
        if torch.allclose(got, case.clean_cache[name].cpu(), atol=1e-5):
            raise AssertionError(f"{mode} equals the clean run's: the sender's z must come from corrupt_cache.")
        if not torch.allclose(got, want, atol=1e-4):
            raise AssertionError(
                f"{mode} at layer {layer} differs from the reference (largest gap {(got - want).abs().max():.3g}). "
                "Freeze every head's z at its clean value except the sender's (corrupted), and save "
                f"hooks.name({mode!r}, layer) from that run."
            )
    print("receivers' inputs in the frozen run: correct.")


@answered
def check_path_patch_to_receivers(fn: Callable[..., float], model: HookedTransformer) -> None:
    """Path patching into receivers' queries, keys and values, against ``patching.path_patch_heads``."""
    case = _case(model)
    args = (model, case.batch.tokens, case.clean_cache, case.corrupt_cache)
    last, n_heads = model.cfg.n_layers - 1, model.cfg.n_heads
    if last > 0:  # a receiver before the sender reads a clean input: the path does not exist
        got = _float(fn(*args, (last, 0), [(0, 0)], "q", case.change), "path_patch_to_receivers")
        close(got, 0.0, f"sender {last}.0 into the queries of receiver 0.0 (an earlier layer)", "That path does not "
              "exist, so nothing changes. Rerun the clean tokens replacing only the receivers' inputs, taken from the "
              "frozen run (where an earlier layer still computes on clean inputs).", tol=1e-4)  # fmt: skip
    sender, receivers = (0, 0), [(last, 0), (last, n_heads - 1)]
    for mode in ("q", "k", "v"):
        want = patching.path_patch_heads(*args, [sender], case.change, receivers, mode).item()
        got = _float(fn(*args, sender, receivers, mode, case.change), "path_patch_to_receivers")
        close(
            got,
            want,
            f"{mode} of receivers {receivers}",
            "Rerun the clean tokens replacing only the receivers' heads (not their whole layer) with the inputs "
            "from the frozen run, and return the mean metric.",
        )
    print("path patching into receivers: correct.")


@answered
def check_copying_score(fn: Callable[..., float], model: HookedTransformer) -> None:
    """Copying and negative copying scores of a few heads, against ``heads.copying_score``."""
    names = ioi.default_names(model)
    tokens = torch.tensor([model.to_single_token(" " + n) for n in names], device=model.cfg.device)
    for layer, head in [(model.cfg.n_layers - 1, 0), (model.cfg.n_layers // 2, model.cfg.n_heads - 1)]:
        for negative in (False, True):
            want = copying_score(model, layer, head, tokens, 5, negative)
            got = _float(fn(model, layer, head, tokens, 5, negative), "copying_score")
            close(
                got,
                want,
                f"{'negative ' if negative else ''}copying score of {layer}.{head}",
                "Embed each name, add MLP 0's output on it (blocks[0].mlp(blocks[0].ln2(x))), apply W_V and W_O, "
                "then ln_final and the unembedding (negated for the negative score), and count names in their top 5.",
            )
    print("copying score: correct.")


@answered
def check_mean_attention(fn: Callable[..., Tensor], model: HookedTransformer) -> None:
    """Attention between named positions on a small batch, against ``ioi_circuit.mean_attention``."""
    case = _case(model)
    n_layers = model.cfg.n_layers
    for dest, src in [("end", "IO"), ("S2", "S1+1")]:
        want = mean_attention(case.clean_cache, case.batch, dest, src)
        got = _shaped(fn(case.clean_cache, case.batch, dest, src), want.shape, "a [layer, head] tensor")
        if torch.allclose(got, want, atol=1e-5):
            continue
        if dest == "end" and torch.allclose(got, mean_attention(case.clean_cache, case.batch, src, dest), atol=1e-5):
            raise AssertionError(
                f"{dest} → {src}: that is the attention from {src} to {dest}. A pattern is [batch, head, dest, src]: "
                "the query (destination) axis comes before the key (source) axis."
            )
        raise AssertionError(
            f"{dest} → {src}: expected {want[n_layers - 1].tolist()} for the last layer's heads, got "
            f"{got[n_layers - 1].tolist()}. Read each prompt at its own positions[dest] and positions[src], all heads "
            "at once, and average over prompts only."
        )
    print("attention between named positions: correct.")
