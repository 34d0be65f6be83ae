"""Measuring sparse autoencoders and transcoders, and looking at their latents.

The metrics of Bricken et al. (2023) and Gao et al. (2024): L0, explained variance, normalised MSE (Gao et al.: the
error over that of predicting the mean), shrinkage, dead / dense latents, and the next-token loss with the
reconstruction spliced in (recovered against zero-ablation, and the increase over the clean loss in nats); MMCS
against known features; top-activating contexts and logit effects.
"""

from __future__ import annotations

import copy

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn
from transformer_lens import HookedTransformer

from interp_utils.core.hooks import hook_layer, mean_loss, splice_hooks, zero_past_bos
from interp_utils.core.report import Band

DENSE = 0.1  # a latent firing on more than 10% of tokens is "dense"
# Lesson 04's reconstruction finding: the share of the loss recovered against mean-ablation (a stronger baseline than
# zero-ablation) that an SAE spliced in must reach; an SAE whose decoder is re-initialised must fall below it.
RECONSTRUCTION_BAND = Band.at_least(0.8)


@torch.no_grad()
def evaluate_sae(sae, data: Tensor, batch_size: int = 4096) -> dict:
    """L0, explained variance (1 - error / variance around the mean), normalised MSE (Gao et al.: the error over the
    error of always predicting the mean, so 1 - explained variance), the error relative to ||x||^2 (predicting zero),
    shrinkage, latent firing frequencies and dead / dense fractions, over ``data`` ([n, d] or [n, 2, d] pairs).

    Shrinkage is the factor that best rescales the centred reconstruction onto the centred target,
    <x_hat - mu, x - mu> / ||x_hat - mu||^2: 1 for an unbiased reconstruction, above 1 when it is too short.
    Works for any SAE with ``encode``, ``decode`` and ``W_dec`` (SAELens's too).
    """
    if data.ndim not in (2, 3) or (data.ndim == 3 and data.shape[1] != 2):
        raise ValueError(
            f"evaluate_sae takes [n, d] activations or [n, 2, d] (input, target) pairs, got {tuple(data.shape)}."
        )
    transcoder = data.ndim == 3
    device = sae.W_dec.device
    mean = (data[:, 1] if transcoder else data).double().mean(0).to(device)
    sq_err, sq_norm, variance, dot, recon_sq, l0, n = 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0
    fired = torch.zeros(sae.W_dec.shape[0], device=device)
    for chunk in data.split(batch_size):
        chunk = chunk.to(device)
        x, y = (chunk[:, 0], chunk[:, 1]) if transcoder else (chunk, chunk)
        f = sae.encode(x)
        y_hat = sae.decode(f)
        sq_err += (y - y_hat).pow(2).sum().item()
        sq_norm += y.pow(2).sum().item()
        y_c, y_hat_c = y.double() - mean, y_hat.double() - mean
        variance += y_c.pow(2).sum().item()  # squared deviations from the mean
        dot += (y_hat_c * y_c).sum().item()
        recon_sq += y_hat_c.pow(2).sum().item()
        active = f > 0
        l0 += active.float().sum().item()
        fired += active.float().sum(0)
        n += len(chunk)
    freq = (fired / n).cpu()
    return {
        "l0": l0 / n,
        "explained_variance": 1 - sq_err / variance,
        "nmse": sq_err / variance,
        "error_vs_norm": sq_err / sq_norm,
        "shrinkage": dot / max(recon_sq, 1e-12),
        "frequency": freq,
        "dead_fraction": (freq == 0).float().mean().item(),
        "dense_fraction": (freq > DENSE).float().mean().item(),
        "tokens": n,
    }


@torch.no_grad()
def loss_baselines(
    model: HookedTransformer, hook_name: str, tokens: Int[Tensor, "batch pos"], model_batch: int = 16
) -> dict[str, float]:
    """The reference ends of the loss-recovered scale: the clean loss, the loss with ``hook_name`` zeroed (past BOS),
    and the loss with it replaced by its mean over the same tokens (past BOS; a stronger baseline than zero).
    They do not depend on the SAE: compute them once for many SAEs on the same tokens."""
    past_bos, layer = [], hook_layer(hook_name)
    with torch.inference_mode():
        for chunk in tokens.split(model_batch):
            _, cache = model.run_with_cache(
                chunk.to(model.cfg.device), names_filter=hook_name, stop_at_layer=None if layer is None else layer + 1
            )
            past_bos.append(cache[hook_name][:, 1:].double().flatten(0, 1))
    mean = torch.cat(past_bos).mean(0)  # the activation's mean past BOS, over these tokens

    def mean_past_bos(act: Tensor, hook=None) -> Tensor:
        act = act.clone()
        act[:, 1:] = mean.to(act.dtype)
        return act

    return {
        "clean": mean_loss(model, tokens, [], model_batch),
        "zero_ablated": mean_loss(model, tokens, [(hook_name, zero_past_bos)], model_batch),
        "mean_ablated": mean_loss(model, tokens, [(hook_name, mean_past_bos)], model_batch),
    }


@torch.no_grad()
def ce_loss_recovered(
    model: HookedTransformer,
    sae,
    hook_name: str,
    tokens: Int[Tensor, "batch pos"],
    input_hook: str | None = None,
    model_batch: int = 16,
    baselines: dict[str, float] | None = None,
) -> dict[str, float]:
    """Next-token loss with the SAE's reconstruction spliced in at ``hook_name``, against the clean loss and
    zero-ablation: recovered = (zero - spliced) / (zero - clean); the same against mean-ablation
    (``recovered_vs_mean``, when the baselines have it); and the increase spliced - clean (``ce_delta``, nats), which
    does not depend on how weak zero-ablation is. Position 0 (BOS) is left untouched, as in training.

    A transcoder reads ``input_hook`` (e.g. ``blocks.1.ln2.hook_normalized``) and replaces ``hook_name``.
    ``baselines`` (from :func:`loss_baselines` on the same tokens) saves recomputing the two reference losses.
    """
    result = dict(baselines or loss_baselines(model, hook_name, tokens, model_batch))
    result["spliced"] = mean_loss(model, tokens, splice_hooks([(sae, hook_name, input_hook)]), model_batch)
    result["recovered"] = (result["zero_ablated"] - result["spliced"]) / (result["zero_ablated"] - result["clean"])
    if "mean_ablated" in result:
        gap = result["mean_ablated"] - result["clean"]
        result["recovered_vs_mean"] = (result["mean_ablated"] - result["spliced"]) / gap if gap else float("nan")
    result["ce_delta"] = result["spliced"] - result["clean"]
    return result


@torch.no_grad()
def reinitialised_decoder(sae, seed: int = 0):
    """A copy of ``sae`` with each decoder row replaced by a random direction of the same norm (biases, encoder and
    scales kept): the same latents firing, writing nothing they learned. The control for "the reconstruction keeps
    the model working"."""
    control = copy.deepcopy(sae)
    generator = torch.Generator().manual_seed(seed)
    random = torch.randn(control.W_dec.shape, generator=generator).to(control.W_dec.device, control.W_dec.dtype)
    norms = control.W_dec.norm(dim=1, keepdim=True)
    control.W_dec.copy_(random / random.norm(dim=1, keepdim=True) * norms)
    return control


def l0(acts: Float[Tensor, "n d_sae"]) -> float:
    """The mean number of active (positive) latents per token."""
    return (acts > 0).float().sum(-1).mean().item()


def normalised_mse(x: Float[Tensor, "n d"], x_hat: Float[Tensor, "n d"]) -> float:
    """Gao et al.'s normalised MSE: the squared error over that of always predicting the mean of ``x``
    (``evaluate_sae`` sums the same over chunks)."""
    return ((x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum()).item()


def explained_variance(x: Float[Tensor, "n d"], x_hat: Float[Tensor, "n d"]) -> float:
    """1 - squared error / squared deviation of ``x`` from its mean: one minus the normalised MSE."""
    return 1 - normalised_mse(x, x_hat)


def feature_recovery(
    decoder: Float[Tensor, "d_sae d"], true: Float[Tensor, "n_true d"], threshold: float = 0.9
) -> dict:
    """How well learned directions match known ones: for each true feature the best cosine similarity with any
    decoder row; their mean (MMCS) and the fraction above ``threshold``."""
    if decoder.shape[-1] != true.shape[-1]:
        raise ValueError(f"Decoder rows ({decoder.shape[-1]}-d) and true features ({true.shape[-1]}-d) must match.")
    cos = nn.functional.normalize(true, dim=-1) @ nn.functional.normalize(decoder, dim=-1).T
    best = cos.max(dim=1).values
    return {
        "mmcs": best.mean().item(),
        "matched_fraction": (best > threshold).float().mean().item(),
        "best": best,
        "cos": cos,
    }


# --- looking at latents ---


@torch.no_grad()
def latent_activations(
    model: HookedTransformer, sae, hook_name: str, tokens: Int[Tensor, "batch pos"], model_batch: int = 32
) -> Float[Tensor, "batch pos d_sae"]:
    """Every latent's activation at every token (BOS positions set to 0, as the SAE never saw them)."""
    out, layer = [], hook_layer(hook_name)
    for chunk in tokens.split(model_batch):
        _, cache = model.run_with_cache(
            chunk.to(model.cfg.device), names_filter=hook_name, stop_at_layer=None if layer is None else layer + 1
        )
        acts = sae.encode(cache[hook_name].float())
        acts[:, 0] = 0.0
        out.append(acts.cpu())
    return torch.cat(out)


def top_contexts(
    acts: Float[Tensor, "batch pos"], k: int = 8, before: int = 12, after: int = 3
) -> list[tuple[int, int, slice, float]]:
    """The ``k`` highest activations of one latent: (row, position, context window, value)."""
    values, flat = acts.flatten().topk(min(k, acts.numel()))
    out = []
    for value, index in zip(values.tolist(), flat.tolist(), strict=True):
        row, pos = divmod(index, acts.shape[1])
        out.append((row, pos, slice(max(0, pos - before), min(acts.shape[1], pos + after + 1)), value))
    return out


@torch.no_grad()
def logit_effects(model: HookedTransformer, sae, latent: int, k: int = 8) -> dict[str, list[tuple[str, float]]]:
    """Tokens a latent's decoder direction promotes and suppresses most, read through the unembedding."""
    effects = sae.W_dec[latent].to(model.W_U.device) @ model.W_U
    top, bottom = effects.topk(k), effects.topk(k, largest=False)
    name = model.to_single_str_token
    return {
        "promotes": [(name(i), v) for v, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)],
        "suppresses": [(name(i), v) for v, i in zip(bottom.values.tolist(), bottom.indices.tolist(), strict=True)],
    }
