"""Checks for notebook 08's exercises (the suite's methods written with nnsight): each answer runs on the lesson's
nnsight model and is compared with the same measurement made by TransformerLens hooks on its twin (same weights),
with the usual wrong answers (the padded last column, a block's output for its input, BOS steered, α forgotten)
recognised and named."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from transformer_lens import HookedTransformer

from interp_utils.core import hooks
from interp_utils.course.checks import answered
from interp_utils.data import ioi
from interp_utils.models.scaling import tl_final_logits
from interp_utils.probing import steering
from interp_utils.probing.probes import residuals_at

ATOL = 1e-4  # nnsight on the converted model against TransformerLens: float error only


def _batch(tl: HookedTransformer, n: int = 6) -> ioi.IOIBatch:
    """A few IOI prompts from several templates, so that rows end at different positions (right padding)."""
    prompts = ioi.make_ioi_prompts(n, ioi.default_names(tl), ioi.default_templates(tl), seed=7)
    batch = ioi.ioi_batch(tl, prompts, seed=8)
    if bool((batch.positions["end"] == batch.tokens.shape[1] - 1).all()):  # make sure some rows are padded
        pad = torch.full((n, 2), ioi.pad_id(tl), dtype=batch.tokens.dtype, device=batch.tokens.device)
        batch.tokens, batch.corrupted = torch.cat([batch.tokens, pad], 1), torch.cat([batch.corrupted, pad], 1)
    return batch


def _tensor(got: object, shape: tuple[int, ...], what: str) -> Tensor:
    if not isinstance(got, Tensor):
        raise AssertionError(f"Return {what} as a tensor, got {type(got).__name__}.")
    if tuple(got.shape) != shape:
        raise AssertionError(f"{what} should be shaped {list(shape)}, got {list(got.shape)}.")
    return got.detach().float().cpu()


def _close(a: Tensor, b: Tensor) -> bool:
    return a.shape == b.shape and bool((a - b).abs().max() <= ATOL * max(1.0, float(b.abs().max())))


def _last_column(batch: ioi.IOIBatch) -> Tensor:
    return torch.full((len(batch),), batch.tokens.shape[1] - 1, device=batch.tokens.device)


@answered
def check_final_logits(fn: Callable[..., Tensor], tl: HookedTransformer, lm: Any) -> None:
    batch = _batch(tl)
    end = batch.positions["end"]
    got = _tensor(fn(lm, batch.tokens, end), (len(batch), tl.cfg.d_vocab), "the logits at each row's end")
    want = tl_final_logits(tl, batch.tokens, end)
    if _close(got, tl_final_logits(tl, batch.tokens, _last_column(batch))):
        raise AssertionError("These are the logits of the last column, which is padding for the shorter prompts: take "
                             "each row's own end position, logits[rows, end].")  # fmt: skip
    if _close(got, want.softmax(-1)) or _close(got, want.log_softmax(-1)):
        raise AssertionError("Return the raw logits (lm.output.logits), not probabilities or log-probabilities.")
    if not _close(got, want):
        raise AssertionError(f"Your logits differ from TransformerLens's on the same weights by up to "
                             f"{float((got - want).abs().max()):.3g}.")  # fmt: skip


@answered
def check_resid_pre(fn: Callable[..., Tensor], tl: HookedTransformer, lm: Any) -> None:
    batch = _batch(tl)
    at = batch.positions["S2"]
    n, layers, d = len(batch), tl.cfg.n_layers, tl.cfg.d_model
    got = fn(lm, batch.tokens, at)
    if isinstance(got, Tensor) and tuple(got.shape) == (layers, n, d):
        raise AssertionError(f"Shaped [layer, batch, d_model]: stack the layers on dimension 1, [{n}, {layers}, {d}].")
    got = _tensor(got, (n, layers, d), "the residual stream entering each block")
    want = residuals_at(tl, batch.tokens, at, kind="resid_pre")
    if _close(got, residuals_at(tl, batch.tokens, at)):  # resid_post
        raise AssertionError("That is each block's output (the stream after it): read the block's input, the stream "
                             "entering it. Layer 0's input is the embeddings.")  # fmt: skip
    if _close(got, residuals_at(tl, batch.tokens, _last_column(batch), kind="resid_pre")):
        raise AssertionError("You read the last column for every row: read each row at its own position, at[row].")
    if not _close(got, want):
        raise AssertionError(f"Your stream differs from TransformerLens's resid_pre by up to "
                             f"{float((got - want).abs().max()):.3g}.")  # fmt: skip


def _replace_at(layer: int, rows: Tensor, at: Tensor, clean: Tensor) -> list:
    def hook(act: Tensor, hook) -> Tensor:
        act = act.clone()
        act[rows, at] = clean.to(act)
        return act

    return [(hooks.name("resid_pre", layer), hook)]


@answered
def check_patch_resid(fn: Callable[..., Tensor], tl: HookedTransformer, lm: Any) -> None:
    batch = _batch(tl)
    end, at, layer = batch.positions["end"], batch.positions["S2"], 1
    rows = torch.arange(len(batch), device=batch.tokens.device)
    clean = residuals_at(tl, batch.tokens, at, kind="resid_pre")  # [batch, layer, d_model]
    got = fn(lm, batch.corrupted, clean[:, layer], layer, at, end)
    got = _tensor(got, (len(batch), tl.cfg.d_vocab), "the patched run's logits at each row's end")
    want = tl_final_logits(tl, batch.corrupted, end, _replace_at(layer, rows, at, clean[:, layer]))
    if _close(got, tl_final_logits(tl, batch.corrupted, end)):
        raise AssertionError("Nothing changed: these are the corrupted run's logits. Write the clean stream into the "
                             "block's input itself, inside the trace and in place, at each row's position; writing "
                             "into a copy leaves the model's input as it was.")  # fmt: skip
    if _close(got, tl_final_logits(tl, batch.corrupted, end, _replace_at(layer + 1, rows, at, clean[:, layer]))):
        raise AssertionError(f"You patched block {layer}'s output, the stream entering block {layer + 1}: patch the "
                             f"input of block {layer}.")  # fmt: skip
    if not _close(got, want):
        raise AssertionError(f"Your patched logits differ from TransformerLens's patch of resid_pre {layer} at S2 "
                             f"by up to {float((got - want).abs().max()):.3g}: replace only each row's position "
                             "at[row].")  # fmt: skip


@answered
def check_steer(fn: Callable[..., Tensor], tl: HookedTransformer, lm: Any) -> None:
    batch = _batch(tl)
    end, layer, alpha = batch.positions["end"], 1, 2.5
    vector = torch.randn(tl.cfg.d_model, generator=torch.Generator().manual_seed(3))
    vector = vector / vector.norm() * 5.0
    got = fn(lm, batch.tokens, layer, vector, alpha, end)
    got = _tensor(got, (len(batch), tl.cfg.d_vocab), "the steered run's logits at each row's end")

    def steered(**kwargs) -> Tensor:
        args = {"layer": layer, "vector": vector, "alpha": alpha} | kwargs
        return tl_final_logits(tl, batch.tokens, end, steering.add_hooks(**args))

    everywhere = list(range(batch.tokens.shape[1]))
    if _close(got, steered(positions=everywhere)):
        raise AssertionError("You steered BOS too: add the vector at every position after the first (the first "
                             "token's stream is the same in every prompt and large; the suite leaves it "
                             "alone).")  # fmt: skip
    if _close(got, steered(alpha=1.0)):
        raise AssertionError("The vector was added as it is: scale it by alpha.")
    if _close(got, steered(at=end)):
        raise AssertionError("You added the vector at the last token only: add it at every position after BOS.")
    if _close(got, steered(layer=layer + 1)):
        raise AssertionError(f"You steered block {layer}'s output: add the vector to the stream entering block "
                             f"{layer} (its input).")  # fmt: skip
    want = steered()
    if not _close(got, want):
        raise AssertionError(f"Your steered logits differ from steering.add_hooks's by up to "
                             f"{float((got - want).abs().max()):.3g}.")  # fmt: skip
