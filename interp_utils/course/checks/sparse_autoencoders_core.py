"""Checks for notebook 04's core exercises (sparse autoencoders): the SAE's losses (forward pass, TopK or ReLU with
either L1 recipe, AuxK on dead latents), resampling dead latents, the training loop, the metrics pass and the loss
with the SAE spliced in. Each works in stages (what comes back, a case worked out by hand, the suite's reference on
random cases, the usual mistakes named); :mod:`interp_utils.course.checks.sparse_autoencoders` re-exports them with
the lesson's other checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor
from transformer_lens import HookedTransformer

from interp_utils.core import hooks
from interp_utils.course.checks import answered
from interp_utils.dictionaries.sae import SAE, SAEConfig, resample_dead_, train_sae
from interp_utils.dictionaries.sae_metrics import ce_loss_recovered, evaluate_sae


def _hand_sae(scale: float = 1.0) -> SAE:
    """A 3-latent ReLU SAE worked out by hand: for x = [1, 2] (times ``scale``), x - b_dec = [0, 1],
    pre = [0, 0.5, -1], f = [0, 0.5, 0], x_hat = [1, 2]."""
    sae = SAE(SAEConfig(d_in=2, d_sae=3, architecture="relu", l1_coeff=2.0))
    with torch.no_grad():
        sae.W_enc.copy_(torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, -1.0]]))
        sae.b_enc.copy_(torch.tensor([0.0, -0.5, 0.0]))
        sae.W_dec.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]))
        sae.b_dec.copy_(torch.tensor([1.0, 1.0]))
        sae.in_scale.fill_(scale), sae.out_scale.fill_(scale)
    return sae


def _close(a: Tensor, b: Tensor, atol: float = 1e-5) -> bool:
    return (
        torch.is_tensor(a) and a.shape == b.shape and torch.allclose(a.detach().float(), b.detach().float(), atol=atol)
    )


def _num(value: object) -> float:
    return float(torch.as_tensor(value).detach())


def _random_sae(cfg: SAEConfig) -> SAE:
    torch.manual_seed(0)
    sae = SAE(cfg)
    with torch.no_grad():
        sae.W_enc.normal_(), sae.b_dec.normal_(), sae.b_enc.normal_(0, 0.3)
        sae.W_dec.mul_(torch.rand(cfg.d_sae, 1) + 0.5)  # rows of other lengths: the norm weighting shows
        sae.in_scale.fill_(1.5), sae.out_scale.fill_(1.5)
    return sae


@answered
def check_sae_losses(fn: Callable[..., dict]) -> None:
    """The hand-worked SAE (also with inputs at twice the scale), then both L1 recipes and TopK with AuxK on random
    SAEs against ``SAE.losses``, values and gradients."""
    x = torch.tensor([[1.0, 2.0]])
    out = fn(_hand_sae(), x, None, 0.5)
    if not isinstance(out, dict) or not {"mse", "acts", "err", "loss", "l1"} <= set(out):
        raise AssertionError("Return a dict with 'mse', 'acts', 'err', 'loss' and (ReLU) 'l1', as SAE.losses does.")
    if tuple(out["acts"].shape) != (1, 3) or tuple(out["err"].shape) != (1, 2):
        raise AssertionError(
            f"'acts' is [n, d_sae] = (1, 3) and 'err' [n, d] = (1, 2), got {tuple(out['acts'].shape)}."
        )
    if not _close(out["acts"], torch.tensor([[0.0, 0.5, 0.0]])):
        raise AssertionError(
            f"For x = [1, 2] and b_dec = [1, 1] the latents should be [[0, 0.5, 0]], got {out['acts'].tolist()}: "
            "subtract b_dec from x before the encoder (the pre-encoder bias), then add b_enc and apply the ReLU."
        )
    if not _close(out["err"], torch.zeros(1, 2)) or abs(_num(out["mse"])) > 1e-6:
        raise AssertionError(
            f"x_hat = f @ W_dec + b_dec = [1, 2] = x, so err and mse are 0; got err {out['err'].tolist()}."
        )
    if abs(_num(out["loss"]) - 0.5) > 1e-5:
        raise AssertionError(
            f"Expected loss 0.5 = mse 0 + l1_scale 0.5 x l1_coeff 2 x L1 0.5 (sum of f, mean over tokens), got "
            f"{_num(out['loss']):.4f}: the penalty is scaled by both l1_scale and cfg.l1_coeff."
        )
    out = fn(_hand_sae(scale=2.0), 2 * x, None, 0.5)
    if not _close(out["acts"], torch.tensor([[0.0, 0.5, 0.0]])) or not _close(out["err"], torch.zeros(1, 2)):
        raise AssertionError(
            "With in_scale = out_scale = 2 and x = [2, 4] the SAE sees [1, 2]: the same latents and zero error. Divide "
            "the input by sae.in_scale (and the target by sae.out_scale) first: the SAE works in its own units."
        )
    recipes: tuple[tuple[Literal["bricken2023", "april2024"], str], ...] = (
        ("bricken2023", "plain L1: the sum of the activations"),
        ("april2024", "weight each activation by its decoder row's norm (cfg.weight_l1_by_norm)"),
    )
    for recipe, hint in recipes:
        sae = _random_sae(SAEConfig(d_in=6, d_sae=12, architecture="relu", l1_coeff=0.7, recipe=recipe))
        x = torch.randn(9, 6, generator=torch.Generator().manual_seed(1))
        mine, want = fn(sae, x, None, 0.3), sae.losses(x, l1_scale=0.3)
        if not (_close(mine["mse"], want["mse"]) and _close(mine["acts"], want["acts"])):
            raise AssertionError(f"Random ReLU SAE ({recipe}): the activations or mse differ from SAE.losses.")
        if not (_close(mine["l1"], want["l1"], 1e-4) and _close(mine["loss"], want["loss"], 1e-4)):
            raise AssertionError(
                f"Random ReLU SAE, recipe {recipe}: expected l1 {_num(want['l1']):.4f} and loss "
                f"{_num(want['loss']):.4f}, got {_num(mine['l1']):.4f} and {_num(mine['loss']):.4f}: {hint}."
            )
    sae = _random_sae(SAEConfig(d_in=6, d_sae=16, k=3, aux_k=4))
    x = torch.randn(9, 6, generator=torch.Generator().manual_seed(2))
    dead = torch.arange(16) % 3 == 0
    mine = fn(sae, x, None, 1.0)
    if not _close(mine["acts"], sae.losses(x)["acts"]) or not _close(mine.get("aux", torch.zeros(())), torch.zeros(())):
        raise AssertionError(
            "TopK SAE, no dead latents: keep each token's cfg.k largest pre-activations through a ReLU; 'aux' is 0."
        )
    mine, want = fn(sae, x, dead, 1.0), sae.losses(x, dead=dead)
    if "aux" not in mine or not _close(mine["aux"], want["aux"], 1e-4) or not _close(mine["loss"], want["loss"], 1e-4):
        raise AssertionError(
            f"TopK with dead latents: expected aux {_num(want['aux']):.4f}, got {_num(mine.get('aux', -1)):.4f}. "
            "Only dead latents take part: each token's cfg.aux_k largest dead pre-activations, through a ReLU, decoded "
            "with the dead rows (no bias), against err; loss = mse + cfg.aux_coeff x aux."
        )
    grads = []
    for losses in (fn, lambda s, x, d, _: s.losses(x, dead=d)):
        sae.zero_grad()
        losses(sae, x, dead, 1.0)["loss"].backward()
        grads.append([torch.zeros(()) if p.grad is None else p.grad.clone() for p in sae.parameters()])
    if not all(_close(a, b, 1e-4) for a, b in zip(*grads, strict=True)):
        raise AssertionError(
            "The loss is right but its gradients differ: detach err inside the AuxK term, so that AuxK trains only "
            "the dead latents and does not pull the live reconstruction."
        )
    print("SAE losses: correct.")


def _resample_case() -> tuple[SAE, Tensor, Tensor, Tensor, torch.optim.Optimizer]:
    torch.manual_seed(0)
    sae = SAE(SAEConfig(d_in=4, d_sae=6, architecture="relu"))
    with torch.no_grad():
        sae.b_enc.fill_(0.3), sae.b_dec.normal_(), sae.in_scale.fill_(2.0), sae.out_scale.fill_(2.0)
    opt = torch.optim.Adam(sae.parameters(), lr=1e-2)
    for p in sae.parameters():
        p.grad = torch.randn_like(p)
    opt.step()  # Adam's moments are non-zero everywhere
    x, err = torch.randn(10, 4), torch.randn(10, 4)
    err[:5] = 0.0  # half the inputs are reconstructed perfectly: never pick them
    err[5:] *= torch.tensor([[0.05], [0.05], [1.0], [3.0], [3.0]])  # errors of very different sizes
    return sae, torch.tensor([True, False, True, False, False, True]), x, err, opt


@answered
def check_resample(fn: Callable[..., int]) -> None:
    """Three dead latents resampled with a seeded generator against ``resample_dead_``: what changes, the new rows
    and columns, Adam's moments; then more dead latents than inputs with an error."""
    mine, dead, x, err, opt = _resample_case()
    want, _, _, _, want_opt = _resample_case()
    with torch.no_grad():
        n = fn(mine, dead, x, err, opt, torch.Generator().manual_seed(1))
        resample_dead_(want, dead, x, None, err, want_opt, torch.Generator().manual_seed(1))
    if n != 3:
        raise AssertionError(f"Return the number of latents resampled (3 here), got {n!r}.")
    if not torch.allclose(mine.W_dec[~dead], want.W_dec[~dead]) or not torch.allclose(
        mine.W_enc[:, ~dead], want.W_enc[:, ~dead]
    ):
        raise AssertionError("Live latents changed: resample only the dead ones.")
    if not torch.allclose(mine.W_dec, want.W_dec, atol=1e-5):
        raise AssertionError(
            "The dead latents' decoder rows differ. Draw one input per dead latent with the generator, without "
            "replacement, with probability proportional to each input's squared error summed over dimensions; the "
            "new row is that input in the SAE's units (divided by in_scale) minus b_dec, scaled to unit norm."
        )
    if not torch.allclose(mine.W_enc, want.W_enc, atol=1e-5) or not torch.allclose(mine.b_enc, want.b_enc):
        raise AssertionError(
            "Decoder rows right; the encoder differs. Each dead latent's encoder column is the same unit direction "
            "times 0.2 times the mean norm of the live latents' encoder columns (measured before the change), and "
            "its b_enc is 0."
        )
    for param, want_param in zip(mine.parameters(), want.parameters(), strict=True):
        for key in ("exp_avg", "exp_avg_sq"):
            if not torch.allclose(opt.state[param][key], want_opt.state[want_param][key]):
                raise AssertionError(
                    f"The weights are right, Adam's state is not: set the {key} entries of the resampled latents "
                    "(their W_dec rows, W_enc columns and b_enc entries) to 0, and leave the live latents' alone."
                )
    mine, _, x, err, opt = _resample_case()
    want, _, _, _, want_opt = _resample_case()
    err[:8] = 0.0  # two inputs with an error, three dead latents: draw with replacement
    try:
        with torch.no_grad():
            fn(mine, dead, x, err, opt, torch.Generator().manual_seed(1))
            resample_dead_(want, dead, x, None, err, want_opt, torch.Generator().manual_seed(1))
        drawn_right = torch.allclose(mine.W_dec, want.W_dec, atol=1e-5)
    except RuntimeError:
        drawn_right = False
    if not drawn_right:
        raise AssertionError(
            "With two inputs that have an error and three dead latents, drawing without replacement picks an input "
            "the SAE reconstructs perfectly (or fails): draw with replacement when fewer inputs have an error than "
            "there are dead latents."
        )
    print("resampling dead latents: correct.")


def _train_case(cfg: SAEConfig, fn: Callable[..., int] | None) -> tuple[SAE, int]:
    torch.manual_seed(0)
    data = torch.randn(2000, 6) @ torch.randn(6, 6) + 2
    sae = SAE(cfg)
    with torch.no_grad():
        sae.b_enc[:4] = -100.0  # four latents that never fire: dead after a quarter of the run
    torch.manual_seed(5)
    if fn is None:
        return sae, train_sae(sae, data, 20_000, batch_size=250, lr=3e-3, progress=False).resampled
    return sae, fn(sae, data, 20_000, 250, 3e-3)


def _same(a: SAE, b: SAE) -> bool:
    return all(torch.allclose(p, q, atol=1e-5) for p, q in zip(a.parameters(), b.parameters(), strict=True))


@answered
def check_train(fn: Callable[..., int]) -> None:
    """Short runs (80 steps) of a TopK SAE and of both L1 recipes against ``train_sae`` from the same seed, with four
    latents that never fire: the decoder constraint, the schedule, the dead-latent counter and resampling."""
    topk = SAEConfig(d_in=6, d_sae=24, k=3)
    mine, n = _train_case(topk, fn)
    want, _ = _train_case(topk, None)
    norms = mine.W_dec.detach().norm(dim=1)
    if not torch.allclose(norms, torch.ones_like(norms), atol=1e-5):
        raise AssertionError("TopK: after training the decoder rows must have unit norm: renormalise after each step.")
    if not _same(mine, want):
        raise AssertionError(
            "TopK: the weights after 80 steps differ from train_sae's. Each step: the dead mask (counter >= window), "
            "the learning rate times the schedule's factor, the losses with the L1 scale, gradients cleared, "
            "backward, the gradient along each decoder row removed, the optimiser step, the rows renormalised."
        )
    april = SAEConfig(d_in=6, d_sae=24, architecture="relu", l1_coeff=0.5, recipe="april2024")
    mine, n = _train_case(april, fn)
    want, _ = _train_case(april, None)
    if not _same(mine, want) or n != 0:
        raise AssertionError(
            "April 2024 recipe: the weights differ from train_sae's (or latents were resampled). This recipe leaves "
            "decoder rows free (no projection, no renormalisation: cfg.normalise_decoder is False) and does not "
            "resample; its L1 penalty ramps up with the schedule's L1 scale."
        )
    bricken = SAEConfig(d_in=6, d_sae=24, architecture="relu", l1_coeff=0.5)
    mine, n = _train_case(bricken, fn)
    want, want_n = _train_case(bricken, None)
    if n != want_n:
        raise AssertionError(
            f"Bricken et al.'s recipe: expected {want_n} latents resampled, got {n}. A latent is dead once it has gone "
            "`window` tokens without firing (count tokens: a batch adds its length; a latent that fired goes back "
            "to 0); resample the dead ones at the steps int(steps x fraction), and restart their counters."
        )
    if not _same(mine, want):
        raise AssertionError(
            "Bricken et al.'s recipe: the right number resampled, but the weights differ from train_sae's: resample "
            "after the optimiser step, from the step's batch and its (detached) err, with the optimiser."
        )
    print("training loop: correct.")


def _hand_eval() -> tuple[SAE, Tensor]:
    """Latents 0 and 1 copy the positive part of x's two coordinates; latent 2 never fires."""
    sae = SAE(SAEConfig(d_in=2, d_sae=3, architecture="relu"))
    with torch.no_grad():
        sae.W_enc.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
        sae.b_enc.copy_(torch.tensor([0.0, 0.0, -10.0]))
        sae.W_dec.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        sae.b_dec.zero_()
    return sae, torch.tensor([[1.0, 2.0], [3.0, -1.0], [2.0, 2.0], [-1.0, -1.0]])


@answered
def check_evaluate(fn: Callable[..., dict]) -> None:
    """The metrics of a hand-worked SAE on four tokens taken in chunks of 3 and 1, then a random SAE against
    ``evaluate_sae``."""
    sae, data = _hand_eval()
    got = fn(sae, data, 3)
    keys = ("l0", "explained_variance", "nmse", "shrinkage", "frequency", "dead_fraction", "dense_fraction")
    if not isinstance(got, dict) or not set(keys) <= set(got):
        raise AssertionError(f"Return a dict with the keys {', '.join(keys)} (evaluate_sae's).")
    # f = [1,2,0], [3,0,0], [2,2,0], [0,0,0]; x_hat = relu(x); squared error 0 + 1 + 0 + 2 = 3
    # the mean is [1.25, 0.5]: squared deviations 8.75 + 9 = 17.75
    x_hat, mu = data.clamp_min(0), data.mean(0)
    want = {
        "l0": (1.25, "the mean over tokens of the number of active latents (2, 1, 2 and 0 here)"),
        "explained_variance": (1 - 3 / 17.75, "1 - squared error 3 / squared deviation 17.75 from the data's mean"),
        "nmse": (3 / 17.75, "squared error 3 / squared deviation 17.75 from the mean of all the data"),
        "shrinkage": (
            ((x_hat - mu) * (data - mu)).sum().item() / (x_hat - mu).pow(2).sum().item(),
            "<x_hat - mean, x - mean> / ||x_hat - mean||^2 summed over every token, with the mean of x",
        ),
        "dead_fraction": (1 / 3, "the share of latents that never fire on any token (latent 2 of 3)"),
        "dense_fraction": (2 / 3, "the share of latents firing on more than 10% of tokens"),
    }
    freq = torch.as_tensor(got["frequency"]).float().cpu()
    if not torch.allclose(freq, torch.tensor([0.75, 0.5, 0.0])):
        raise AssertionError(
            f"Each latent's firing frequency should be [0.75, 0.5, 0] (tokens where it is positive / tokens), got "
            f"{freq.tolist()}."
        )
    for key, (value, what) in want.items():
        if abs(float(got[key]) - value) > 1e-4:
            raise AssertionError(
                f"On four hand-worked tokens (in chunks of 3 and 1) {key} should be {value:.4f}: {what}; got "
                f"{float(got[key]):.4f}. Sum over every chunk first, then divide."
            )
    sae = _random_sae(SAEConfig(d_in=6, d_sae=20, k=4))
    data = torch.randn(1000, 6, generator=torch.Generator().manual_seed(3)) + 1
    got, want_all = fn(sae, data, 300), evaluate_sae(sae, data, 300)
    for key in keys[:4] + keys[5:]:
        if abs(float(got[key]) - want_all[key]) > 1e-4:
            raise AssertionError(
                f"Random TopK SAE, 1,000 tokens in chunks of 300: {key} {float(got[key]):.4f}, expected "
                f"{want_all[key]:.4f}. Use the SAE's encode and decode (its own units), as in the hand case."
            )
    print("metrics: correct.")


@answered
def check_loss_recovered(fn: Callable[..., dict], model: HookedTransformer) -> None:
    """Clean, zero-ablated, mean-ablated and spliced losses and the ratios for a random SAE on 20 random sequences of
    4 tokens (chunks of 16 and 4; short, so BOS weighs in a mean that wrongly includes it), against
    ``ce_loss_recovered``."""
    torch.manual_seed(0)
    sae = SAE(SAEConfig(d_in=model.cfg.d_model, d_sae=2 * model.cfg.d_model, k=8), device=model.W_E.device)
    with torch.no_grad():
        sae.b_dec.normal_()
    tokens = torch.randint(1, model.cfg.d_vocab, (20, 4), generator=torch.Generator().manual_seed(0))
    tokens[:, 0] = model.to_tokens("")[0, 0] if model.tokenizer is not None else 0
    hook = hooks.name("resid_pre", min(1, model.cfg.n_layers - 1))  # early: BOS differs most from the rest
    want = ce_loss_recovered(model, sae, hook, tokens.to(model.cfg.device))
    got = fn(model, sae, hook, tokens.to(model.cfg.device))
    messages = {
        "clean": "the model's mean next-token loss with no hook (each chunk's mean weighted by its rows)",
        "zero_ablated": "the activation set to 0 at every position but the first (BOS)",
        "mean_ablated": "the activation replaced, at every position but BOS, by its mean over every token of every "
        "sequence except the BOS positions",
        "spliced": "the activation replaced by sae(act) at every position but BOS (which the SAE never saw)",
        "recovered": "(zero_ablated - spliced) / (zero_ablated - clean)",
        "recovered_vs_mean": "(mean_ablated - spliced) / (mean_ablated - clean)",
        "ce_delta": "spliced - clean, in nats",
    }
    if not isinstance(got, dict) or not set(messages) <= set(got):
        raise AssertionError(f"Return a dict with the keys {', '.join(messages)}.")
    for key, what in messages.items():
        if abs(float(got[key]) - want[key]) > 1e-4:
            raise AssertionError(f"{key}: expected {want[key]:.4f}, got {float(got[key]):.4f}. It is {what}.")
    print("loss recovered: correct.")
