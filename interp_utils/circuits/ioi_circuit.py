"""The IOI circuit of Wang et al. (2022): the clean and corrupted runs with the normalised metric, the path sweeps,
and the rules that sort heads into the paper's classes from path patching and attention. Notebook 03 applies the
rules one step at a time; :func:`head_classes` applies them all (notebook 06's reference circuit, the bundled
model's card, the exercise checks)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, cast

import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import ActivationCache, HookedTransformer

from interp_utils.circuits import patching
from interp_utils.circuits.heads import Head, top_heads
from interp_utils.core import hooks
from interp_utils.data.ioi import POSITIONS, IOIBatch, logit_diff, normalised_logit_diff

Metric = Callable[[Tensor], Tensor]  # logits -> one value per prompt


@dataclass
class IOIRuns:
    """An IOI batch run clean and corrupted (its ABC twins), both cached, with the mean logit differences that define
    the normalised metric: 1 at the clean mean, 0 at the corrupted mean."""

    model: HookedTransformer
    batch: IOIBatch
    clean_logits: Tensor
    corrupt_logits: Tensor
    clean_cache: ActivationCache
    corrupt_cache: ActivationCache
    clean: float
    corrupt: float

    def normalised(self, logits: Tensor) -> Tensor:
        """Each prompt's logit difference on the normalised scale."""
        return normalised_logit_diff(logits, self.batch, self.clean, self.corrupt)

    def change(self, logits: Tensor) -> Tensor:
        """The normalised logit difference minus the clean run's 1: what a patch changes (path patching's metric)."""
        return self.normalised(logits) - 1.0


@torch.inference_mode()
def run_ioi(model: HookedTransformer, batch: IOIBatch) -> IOIRuns:
    """Both runs of ``batch`` with their caches and mean logit differences."""
    clean_out, clean_cache = model.run_with_cache(batch.tokens)
    corrupt_out, corrupt_cache = model.run_with_cache(batch.corrupted)
    clean_logits, corrupt_logits = cast(Tensor, clean_out), cast(Tensor, corrupt_out)
    clean = logit_diff(clean_logits, batch).mean().item()
    corrupt = logit_diff(corrupt_logits, batch).mean().item()
    return IOIRuns(model, batch, clean_logits, corrupt_logits, clean_cache, corrupt_cache, clean, corrupt)


def all_heads(model: HookedTransformer) -> list[Head]:
    """Every (layer, head), layer by layer."""
    return [(layer, head) for layer in range(model.cfg.n_layers) for head in range(model.cfg.n_heads)]


def _heads_of(scores: Float[Tensor, "layer head"]) -> list[Head]:
    """Every (layer, head) of a [layer, head] table, layer by layer."""
    return [(layer, head) for layer in range(scores.shape[0]) for head in range(scores.shape[1])]


def path_sweep(
    model: HookedTransformer,
    tokens: Int[Tensor, "batch pos"],
    clean_cache,
    corrupt_cache,
    metric: Metric,
    receivers: Sequence[Head] | None = None,
    mode: Literal["q", "k", "v"] = "q",
) -> Float[Tensor, "layer head"]:
    """Path patching from every head into the logits (``receivers=None``), or from every head before the last
    receiver into the receivers' ``mode`` inputs (a receiver in the sender's layer or before it reads a clean input:
    that path does not exist, and its entry stays 0)."""
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    if receivers is None:
        heads_ = all_heads(model)
        values = patching.path_patch_heads(model, tokens, clean_cache, corrupt_cache, heads_, metric)
        return values.reshape(n_layers, n_heads)
    out = torch.zeros(n_layers, n_heads)
    last = max((layer for layer, _ in receivers), default=0)
    senders = [h for h in all_heads(model) if h[0] < last and h not in receivers]
    if senders and receivers:
        values = patching.path_patch_heads(model, tokens, clean_cache, corrupt_cache, senders, metric, receivers, mode)
        for h, v in zip(senders, values, strict=True):
            out[h] = v
    return out


# --- the rules: which heads belong to which class ---

WANG_CLASSES = {  # the head classes of Wang et al. 2022 in GPT-2 small ("layer.head"), as notebook 03 finds them
    "name mover": ["9.9", "9.6", "10.0"],
    "negative name mover": ["10.7", "11.10"],
    "S-inhibition": ["7.3", "7.9", "8.6", "8.10"],
    "induction": ["5.5", "5.8", "5.9", "6.9"],
    "duplicate-token": ["0.1", "0.10", "3.0"],
    "previous-token": ["2.2", "4.11"],
    "backup name mover": ["9.0", "9.7", "10.1", "10.2", "10.6", "10.10", "11.2", "11.9"],
}
PATH_THRESHOLD = 0.05  # a path matters when patching it moves the normalised logit difference by more than this


def name_movers(
    to_logits: Float[Tensor, "layer head"],
    end_to_io: Float[Tensor, "layer head"],
    end_to_s2: Float[Tensor, "layer head"],
    threshold: float = PATH_THRESHOLD,
) -> tuple[list[Head], list[Head]]:
    """Heads whose direct path carries the answer (path patching to the logits below ``-threshold``, strongest
    first), and among them the **name movers**: those attending from END to IO more than to S2. When none of the
    carriers prefers IO, the three strongest carriers stand in, so that later steps have receivers.
    Returns (carriers, name movers)."""
    if not to_logits.shape == end_to_io.shape == end_to_s2.shape:
        raise ValueError(
            f"Shapes differ: {tuple(to_logits.shape)}, {tuple(end_to_io.shape)}, {tuple(end_to_s2.shape)}."
        )
    carriers = [h for h in top_heads(-to_logits, to_logits.numel()) if to_logits[h] < -threshold]
    movers = [h for h in carriers if end_to_io[h] > end_to_s2[h]]
    return carriers, movers or carriers[:3]


def mean_attention(cache, batch: IOIBatch, dest: str, src: str) -> Float[Tensor, "layer head"]:
    """Every head's attention from each prompt's ``dest`` position to its ``src`` position (names from
    :data:`POSITIONS`), averaged over the batch; ``cache`` is a run of ``batch.tokens`` with the patterns."""
    if dest not in POSITIONS or src not in POSITIONS:
        raise ValueError(f"Positions are named {POSITIONS}, got {dest!r} and {src!r}.")
    rows, n_layers = torch.arange(len(batch)), cache.model.cfg.n_layers
    return torch.stack(
        [
            cache[hooks.name("pattern", layer)][rows, :, batch.positions[dest], batch.positions[src]].mean(0)
            for layer in range(n_layers)
        ]
    ).cpu()


def direct_classes(
    to_logits: Float[Tensor, "layer head"],
    end_io: Float[Tensor, "layer head"],
    end_s2: Float[Tensor, "layer head"],
    threshold: float = PATH_THRESHOLD,
) -> dict[str, list[Head]]:
    """The classes read off the heads' direct paths to the logits: **name movers** lower the logit difference when
    patched and attend END → IO more than → S2; **S-suppression** heads lower it and attend to S2 at least as much;
    **negative name movers** raise it and prefer IO. Heads in layer order."""
    prefers_io = end_io > end_s2
    heads_ = _heads_of(to_logits)
    return {
        "name mover": [h for h in heads_ if to_logits[h] < -threshold and prefers_io[h]],
        "S-suppression": [h for h in heads_ if to_logits[h] < -threshold and not prefers_io[h]],
        "negative name mover": [h for h in heads_ if to_logits[h] > threshold and prefers_io[h]],
    }


def s_inhibition_heads(
    to_name_mover_queries: Float[Tensor, "layer head"], threshold: float = PATH_THRESHOLD
) -> list[Head]:
    """Heads whose path into the name movers' queries lowers the logit difference, strongest first."""
    ranked = top_heads(-to_name_mover_queries, to_name_mover_queries.numel())
    return [h for h in ranked if to_name_mover_queries[h] < -threshold]


def induction_and_duplicate(
    to_s_inhibition: Float[Tensor, "layer head"],
    s2_to_s1_plus_1: Float[Tensor, "layer head"],
    s2_to_s1: Float[Tensor, "layer head"],
    threshold: float = PATH_THRESHOLD,
) -> tuple[list[Head], list[Head]]:
    """Heads whose path into the S-inhibition heads' keys or values (the stronger of the two) lowers the logit
    difference, told apart by where S2 attends: **induction** heads to S1+1, **duplicate-token** heads to S1."""
    later = s2_to_s1_plus_1 > s2_to_s1
    heads_ = _heads_of(later)
    found = [h for h in heads_ if to_s_inhibition[h] < -threshold]
    return [h for h in found if later[h]], [h for h in found if not later[h]]


def previous_token_heads(
    to_induction_keys: Float[Tensor, "layer head"], threshold: float = PATH_THRESHOLD
) -> list[Head]:
    """Heads whose path into the induction heads' keys lowers the logit difference, in layer order."""
    heads_ = _heads_of(to_induction_keys)
    return [h for h in heads_ if to_induction_keys[h] < -threshold]


def head_classes(
    runs: IOIRuns, threshold: float = PATH_THRESHOLD, to_logits: Float[Tensor, "layer head"] | None = None
) -> dict[str, list[Head]]:
    """Notebook 03's rules, all at once, by path patching on ``runs`` (normalised logit difference): the direct
    classes (with the three strongest carriers as name movers where none prefers IO), S-inhibition heads (→ the name
    movers' queries), induction and duplicate-token heads (→ S-inhibition keys or values), previous-token heads
    (→ the induction heads' keys). ``to_logits``: the sweep to the logits on ``runs``, where the caller has it."""
    model, batch = runs.model, runs.batch

    def sweep(receivers: Sequence[Head] | None, mode: Literal["q", "k", "v"] = "q") -> Tensor:
        return path_sweep(model, batch.tokens, runs.clean_cache, runs.corrupt_cache, runs.change, receivers, mode)

    attn = {(d, s): mean_attention(runs.clean_cache, batch, d, s) for d, s in
            [("end", "IO"), ("end", "S2"), ("S2", "S1"), ("S2", "S1+1")]}  # fmt: skip
    to_logits = sweep(None) if to_logits is None else to_logits
    _, movers = name_movers(to_logits, attn["end", "IO"], attn["end", "S2"], threshold)
    direct = direct_classes(to_logits, attn["end", "IO"], attn["end", "S2"], threshold)
    s_inhibition = s_inhibition_heads(sweep(movers, "q"), threshold)
    to_si = torch.minimum(sweep(s_inhibition, "k"), sweep(s_inhibition, "v"))
    induction, duplicate = induction_and_duplicate(to_si, attn["S2", "S1+1"], attn["S2", "S1"], threshold)
    return {
        "name mover": direct["name mover"] or list(movers),
        "negative name mover": direct["negative name mover"],
        "S-inhibition": s_inhibition,
        "induction": induction,
        "duplicate-token": duplicate,
        "previous-token": previous_token_heads(sweep(induction, "k"), threshold),
    }
