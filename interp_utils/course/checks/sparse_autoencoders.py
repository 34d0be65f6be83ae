"""Checks for notebook 04's exercises (sparse autoencoders), each on cases with known answers."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from transformer_lens import HookedTransformer

from interp_utils.core import hooks
from interp_utils.course.checks import answered
from interp_utils.dictionaries.sae import SAE, SAEConfig, resample_dead_, sae_train_step


@answered
def check_topk(fn: Callable[[Tensor, int], Tensor]) -> None:
    """TopK on a hand-worked example: keep the k largest, ReLU them, zero the rest."""
    pre = torch.tensor([[3.0, -1.0, 2.0, 0.5], [-2.0, -1.0, -3.0, 4.0]])
    expected = torch.tensor([[3.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 4.0]])
    got = fn(pre, 2)
    if got.shape != pre.shape:
        raise AssertionError(f"TopK must keep the shape {tuple(pre.shape)}, got {tuple(got.shape)}.")
    if not torch.allclose(got, expected):
        raise AssertionError(
            f"For pre-activations {pre.tolist()} and k=2 expected {expected.tolist()} (row 2: the second-largest, "
            f"-1, is negative, so the ReLU zeroes it), got {got.tolist()}."
        )
    print("topk: correct.")


@answered
def check_mmcs(fn: Callable[[Tensor, Tensor], float]) -> None:
    """Mean max cosine similarity on known cases: the true features themselves, rescaled and shuffled; a
    dictionary missing one of two features; and one whose rows are only sign-flipped."""
    true = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    cases = {
        "the true features, rescaled and shuffled, plus an extra row": (
            torch.tensor([[0, 3.0, 0], [2.0, 0, 0], [0, 0, 1.0]]),
            1.0,
        ),
        "a dictionary that has only the first feature": (torch.tensor([[1.0, 0, 0], [0, 0, 1.0]]), 0.5),
        "sign-flipped features (cosine -1 is no match)": (-true, 0.0),
    }
    for name, (decoder, expected) in cases.items():
        got = float(fn(decoder, true))
        if abs(got - expected) > 1e-4:
            raise AssertionError(
                f"For {name} expected {expected} (per true feature, the largest cosine similarity with any decoder "
                f"row; then the mean over true features), got {got:.4f}."
            )
    print("mmcs: correct.")


@answered
def check_explained_variance(fn: Callable[[Tensor, Tensor], float]) -> None:
    """Explained variance is 1 for a perfect reconstruction, 0 for predicting the mean, and can go negative."""
    x = torch.tensor([[1.0, 2.0], [3.0, 2.0], [2.0, 5.0]])
    mean = x.mean(0, keepdim=True).expand_as(x)
    cases = {"a perfect reconstruction": (x, 1.0), "the mean": (mean, 0.0), "all zeros": (torch.zeros_like(x), -4.875)}
    for name, (x_hat, expected) in cases.items():
        got = float(fn(x, x_hat))
        if abs(got - expected) > 1e-4:
            raise AssertionError(
                f"For {name} expected {expected} (1 - squared error / squared deviation from the mean), got {got:.4f}."
            )
    print("explained_variance: correct.")


def _hand_sae() -> tuple[Tensor, ...]:
    """x = [1, 2] through a 3-latent SAE worked out by hand: x - b_dec = [0, 1], pre = [0, 0.5, -1]."""
    x = torch.tensor([[1.0, 2.0]])
    W_enc = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, -1.0]])
    b_enc = torch.tensor([0.0, -0.5, 0.0])
    W_dec = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    b_dec = torch.tensor([1.0, 1.0])
    return x, W_enc, b_enc, W_dec, b_dec


@answered
def check_sae_forward(fn: Callable[..., tuple[Tensor, Tensor]]) -> None:
    """f and x_hat on the hand-worked SAE, then on random weights against ``SAE.encode`` / ``SAE.decode``."""
    x, W_enc, b_enc, W_dec, b_dec = _hand_sae()
    f, x_hat = fn(x, W_enc, b_enc, W_dec, b_dec, torch.relu)
    want_f, want_x = torch.tensor([[0.0, 0.5, 0.0]]), torch.tensor([[1.0, 2.0]])
    if f.shape != want_f.shape or x_hat.shape != want_x.shape:
        raise AssertionError(f"Return (f, x_hat) shaped {tuple(want_f.shape)} and {tuple(want_x.shape)}.")
    if not torch.allclose(f, want_f):
        raise AssertionError(
            f"For x = [1, 2] and b_dec = [1, 1] the latents should be {want_f.tolist()}, got {f.tolist()}: subtract "
            "b_dec from x before the encoder (the pre-encoder bias), then add b_enc and apply the activation."
        )
    if not torch.allclose(x_hat, want_x):
        raise AssertionError(f"x_hat should be f @ W_dec + b_dec = {want_x.tolist()}, got {x_hat.tolist()}.")
    torch.manual_seed(0)
    sae = SAE(SAEConfig(d_in=6, d_sae=12, architecture="relu"))
    with torch.no_grad():
        sae.b_enc.normal_(), sae.b_dec.normal_()
        x = torch.randn(5, 6)
        f, x_hat = fn(x, sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec, torch.relu)
        if not (
            torch.allclose(f, sae.encode(x), atol=1e-5) and torch.allclose(x_hat, sae.decode(sae.encode(x)), atol=1e-5)
        ):
            raise AssertionError("Right on the hand-worked case but not on random weights: check the matrix shapes.")
    print("SAE forward pass: correct.")


@answered
def check_l1_loss(fn: Callable[..., Tensor]) -> None:
    """Two tokens worked out by hand, with plain and decoder-norm-weighted L1."""
    x = torch.tensor([[1.0, 2.0], [0.0, 1.0]])
    x_hat = torch.tensor([[0.0, 0.0], [0.0, 0.0]])  # squared errors summed over dimensions: 5 and 1, mean 3
    f = torch.tensor([[1.0, 0.0, 2.0], [0.0, 1.0, 0.0]])
    W_dec = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]])  # row norms 1, 2, 3
    cases = {False: 3 + 0.5 * (3 + 1) / 2, True: 3 + 0.5 * (7 + 2) / 2}
    for weighted, want in cases.items():
        got = float(fn(x, x_hat, f, W_dec, 0.5, weighted))
        if abs(got - want) > 1e-5:
            what = "sum_i f_i ||W_dec,i||" if weighted else "plain sum_i f_i (no decoder norms)"
            raise AssertionError(
                f"With weight_by_norm={weighted} expected {want} (squared error summed over dimensions, mean over "
                f"tokens, plus 0.5 x the mean over tokens of {what}), got {got:.4f}."
            )
    print("L1 loss: correct.")


@answered
def check_decoder_constraint(remove: Callable[[Tensor, Tensor], Tensor], renorm: Callable[[Tensor], Tensor]) -> None:
    """The gradient along a row [3, 4] removed by hand; rows renormalised; then random cases against the SAE's own."""
    W, grad = torch.tensor([[3.0, 4.0]]), torch.tensor([[1.0, 0.0]])
    want = torch.tensor([[0.64, -0.48]])  # minus (g . u) u with the unit row u = [0.6, 0.8]
    got = remove(W, grad.clone())
    if not torch.allclose(got, want, atol=1e-5):
        raise AssertionError(
            f"For the row [3, 4] and gradient [1, 0] expected {want.tolist()}, got {got.tolist()}: subtract the "
            "gradient's component along the *unit* row, (g . u) u with u = row / ||row||."
        )
    got = renorm(torch.tensor([[3.0, 4.0], [0.0, 2.0]]))
    if not torch.allclose(got, torch.tensor([[0.6, 0.8], [0.0, 1.0]])):
        raise AssertionError(f"Each decoder row (not column) should have norm 1, got {got.tolist()}.")
    torch.manual_seed(0)
    sae = SAE(SAEConfig(d_in=5, d_sae=7, k=2))
    with torch.no_grad():
        sae.W_dec.mul_(torch.rand(7, 1) + 0.5)
    sae.W_dec.grad = torch.randn(7, 5)
    mine = remove(sae.W_dec.detach().clone(), sae.W_dec.grad.clone())
    sae.remove_parallel_grads_()
    if not torch.allclose(mine, sae.W_dec.grad, atol=1e-5):
        raise AssertionError("Right for one row but not for several rows of other lengths: work row by row (dim=1).")
    print("unit-norm decoder rows: correct.")


@answered
def check_aux_k_loss(fn: Callable[..., Tensor]) -> None:
    """AuxK by hand (two dead latents, k_aux = 1), then random cases against ``SAE._aux_loss``."""
    pre = torch.tensor([[5.0, 1.0, 2.0], [5.0, -1.0, -3.0]])
    err = torch.tensor([[1.0, 1.0], [0.5, 0.0]])
    dead = torch.tensor([False, True, True])
    W_dec = torch.tensor([[9.0, 9.0], [1.0, 0.0], [0.0, 1.0]])
    # row 1: the top dead latent is 2 (pre 2) -> reconstructs [0, 2], error left [1, -1]: 2
    # row 2: both dead pre-activations are negative -> nothing, error left [0.5, 0]: 0.25
    want = (2 + 0.25) / 2
    got = float(fn(pre, err, dead, W_dec, 1))
    if abs(got - want) > 1e-5:
        raise AssertionError(
            f"Expected {want} on the hand-worked case, got {got:.4f}. Only dead latents take part (the live latent 0 "
            "has the largest pre-activation); keep each token's k_aux largest, through a ReLU; they reconstruct the "
            "live latents' error err; the loss is the squared error summed over dimensions, mean over tokens."
        )
    torch.manual_seed(0)
    sae = SAE(SAEConfig(d_in=6, d_sae=16, k=3, aux_k=4))
    pre, err, dead = torch.randn(8, 16), torch.randn(8, 6), torch.rand(16) < 0.5
    with torch.no_grad():
        want = float(sae._aux_loss(pre, err, dead))
    got = float(fn(pre, err, dead, sae.W_dec.detach(), 4))
    if abs(got - want) > 1e-4:
        raise AssertionError(
            f"Random case: expected {want:.4f}, got {got:.4f}. Index the decoder rows of the dead latents."
        )
    print("AuxK loss: correct.")


@answered
def check_update_since_fired(fn: Callable[[Tensor, Tensor], Tensor]) -> None:
    """Counters after a batch of 3 tokens in which latents 0 and 2 fire."""
    since = torch.tensor([10.0, 10.0, 0.0, 4.0])
    acts = torch.tensor([[0.5, 0.0, 0.0, 0.0], [0.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    want = torch.tensor([0.0, 13.0, 0.0, 7.0])
    got = fn(since.clone(), acts)
    if not torch.allclose(got.float(), want):
        raise AssertionError(
            f"Expected {want.tolist()}, got {got.tolist()}: a latent that fired on any token of the batch goes back "
            "to 0; the others have gone one batch (3 tokens) longer without firing."
        )
    print("dead-latent counters: correct.")


def _resample_case() -> tuple[SAE, Tensor, Tensor, Tensor]:
    torch.manual_seed(0)
    sae = SAE(SAEConfig(d_in=4, d_sae=6, architecture="relu"))
    with torch.no_grad():
        sae.b_enc.fill_(0.3), sae.b_dec.normal_()
    x, err = torch.randn(10, 4), torch.randn(10, 4)
    err[:5] = 0.0  # half the inputs are reconstructed perfectly: never pick them
    return sae, torch.tensor([True, False, True, False, False, True]), x, err


@answered
def check_resample(fn: Callable[..., None]) -> None:
    """Three dead latents resampled with a seeded generator, against ``resample_dead_``."""
    mine, dead, x, err = _resample_case()
    want, *_ = _resample_case()
    with torch.no_grad():
        fn(mine, dead, x, err, torch.Generator().manual_seed(1))
        resample_dead_(want, dead, x, None, err, None, torch.Generator().manual_seed(1))
    if not torch.allclose(mine.W_dec[~dead], want.W_dec[~dead]) or not torch.allclose(
        mine.W_enc[:, ~dead], want.W_enc[:, ~dead]
    ):
        raise AssertionError("Live latents changed: resample only the dead ones.")
    if not torch.allclose(mine.W_dec, want.W_dec, atol=1e-5):
        raise AssertionError(
            "The dead latents' decoder rows differ. Draw inputs with torch.multinomial(probs, n, replacement=False, "
            "generator=generator), probs proportional to each input's squared error summed over dimensions; the new "
            "row is the chosen input minus b_dec, scaled to unit norm."
        )
    if not torch.allclose(mine.W_enc, want.W_enc, atol=1e-5) or not torch.allclose(mine.b_enc, want.b_enc):
        raise AssertionError(
            "Decoder rows right; the encoder differs. Each dead latent's encoder column is the same unit direction "
            "times 0.2 times the mean norm of the live latents' encoder columns (measured before the change), and "
            "its b_enc is 0."
        )
    print("resampling dead latents: correct.")


@answered
def check_schedule(fn: Callable[[int, int, float, float], tuple[float, float]]) -> None:
    """The two ramps of a 100-step run with a 5% L1 warm-up and a 20% learning-rate decay, at hand-picked steps."""
    for step, want in {
        0: (1.0, 0.0),
        2: (1.0, 0.4),
        5: (1.0, 1.0),
        79: (1.0, 1.0),
        80: (1.0, 1.0),
        90: (0.5, 1.0),
        99: (0.05, 1.0),
    }.items():
        got = tuple(float(v) for v in fn(step, 100, 0.05, 0.2))
        if any(abs(a - b) > 1e-6 for a, b in zip(got, want, strict=True)):
            raise AssertionError(
                f"At step {step} of 100 expected (lr factor, L1 scale) = {want}, got {got}. The L1 scale is "
                "step / (0.05 x 100), capped at 1; the lr factor is 1 until step 80, then (100 - step) / 20."
            )
    print("schedule: correct.")


@answered
def check_sae_train_step(fn: Callable[..., dict]) -> None:
    """Two steps of a ReLU SAE (Bricken et al.'s recipe) against ``sae_train_step`` on a twin."""
    torch.manual_seed(0)
    data, dead = torch.randn(2, 32, 8), torch.zeros(16, dtype=torch.bool)

    def fresh() -> tuple[SAE, torch.optim.Optimizer]:
        torch.manual_seed(1)
        sae = SAE(SAEConfig(d_in=8, d_sae=16, architecture="relu", l1_coeff=1.0))
        return sae, torch.optim.Adam(sae.parameters(), lr=1e-2)

    (mine, my_opt), (want, want_opt) = fresh(), fresh()
    for step in range(2):
        out = fn(mine, my_opt, data[step], dead, 0.5)
        sae_train_step(want, want_opt, data[step], dead, 0.5)
        if not isinstance(out, dict) or "acts" not in out:
            raise AssertionError("Return the dict that sae.losses(...) gave (the loop reads its 'acts' and 'err').")
        norms = mine.W_dec.detach().norm(dim=1)
        if not torch.allclose(norms, torch.ones_like(norms), atol=1e-5):
            raise AssertionError("After the step the decoder rows must have unit norm again: renormalise them.")
        if not all(torch.allclose(a, b, atol=1e-5) for a, b in zip(mine.parameters(), want.parameters(), strict=True)):
            raise AssertionError(
                f"After step {step + 1} the weights differ from the reference. Order: sae.losses(x, dead=dead, "
                "l1_scale=l1_scale), zero the gradients, backward, remove the gradient along each decoder row "
                "(sae.remove_parallel_grads_()), opt.step(), then renormalise (sae.normalise_decoder_())."
            )
    print("training step: correct.")


@answered
def check_l0(fn: Callable[[Tensor], float]) -> None:
    """L0 of a hand-made batch: 2, 0 and 1 active latents."""
    acts = torch.tensor([[0.5, 0.0, 2.0], [0.0, 0.0, 0.0], [0.0, 3.0, 0.0]])
    got = float(fn(acts))
    if abs(got - 1.0) > 1e-6:
        raise AssertionError(f"Three tokens with 2, 0 and 1 active latents have L0 = 1.0 (per token), got {got}.")
    print("L0: correct.")


@answered
def check_normalised_mse(fn: Callable[[Tensor, Tensor], float]) -> None:
    """Gao et al.'s normalised MSE: 0 for a perfect reconstruction, 1 for the mean, against zero on a hand case."""
    x = torch.tensor([[1.0, 2.0], [3.0, 2.0], [2.0, 5.0]])
    zeros, mean = torch.zeros_like(x), x.mean(0, keepdim=True).expand_as(x)
    for name, (x_hat, want) in {"the mean": (mean, 1.0), "x itself": (x, 0.0), "all zeros": (zeros, 5.875)}.items():
        got = float(fn(x, x_hat))
        if abs(got - want) > 1e-4:
            hint = (
                " That is the error relative to ||x||^2 (the baseline of predicting zero), not Gao et al.'s."
                if abs(got - ((x - x_hat).pow(2).sum() / x.pow(2).sum()).item()) < 1e-4
                else ""
            )
            raise AssertionError(
                f"For {name} expected {want} (squared error / that of predicting the mean), got {got:.4f}.{hint}"
            )
    print("normalised MSE: correct.")


@answered
def check_spliced_loss(fn: Callable[..., float], model: HookedTransformer) -> None:
    """The next-token loss with a random SAE spliced into the residual stream, against ``hooks.splice_hooks``."""
    torch.manual_seed(0)
    sae = SAE(SAEConfig(d_in=model.cfg.d_model, d_sae=2 * model.cfg.d_model, k=8), device=model.W_E.device)
    tokens = torch.randint(1, model.cfg.d_vocab, (4, 12), generator=torch.Generator().manual_seed(0)).to(
        model.cfg.device
    )
    tokens[:, 0] = model.to_tokens("")[0, 0] if model.tokenizer is not None else 0
    hook = hooks.name("resid_pre", model.cfg.n_layers // 2)
    tokens = tokens.to(model.W_E.device)
    want = hooks.mean_loss(model, tokens, hooks.splice_hooks([(sae, hook, None)]))
    with torch.no_grad():
        got = float(fn(model, sae, hook, tokens))
    if abs(got - want) > 1e-3:
        raise AssertionError(
            f"Expected a mean loss of {want:.4f}, got {got:.4f}. Replace the activation at every position but the "
            "first (BOS, which the SAE never saw) with sae(act), and return the model's mean next-token loss."
        )
    print("spliced loss: correct.")


@answered
def check_logit_effects(fn: Callable[..., tuple[Tensor, Tensor]], model: HookedTransformer) -> None:
    """The tokens a latent's decoder row promotes most, against ``W_dec[latent] @ W_U``."""
    torch.manual_seed(0)
    sae = SAE(SAEConfig(d_in=model.cfg.d_model, d_sae=32, k=4), device=model.W_E.device)
    with torch.no_grad():
        sae.W_enc.normal_()  # encoder and decoder differ: reading the wrong one shows
        for latent in (0, 17):
            values, ids = fn(model, sae, latent, 5)
            want = (sae.W_dec[latent] @ model.W_U).topk(5)
            if not torch.equal(torch.as_tensor(ids).cpu(), want.indices.cpu()):
                raise AssertionError(
                    f"Latent {latent}: expected tokens {want.indices.tolist()}, got {torch.as_tensor(ids).tolist()}. "
                    "Read the latent's decoder row (what it writes) through the unembedding and take the top k."
                )
            if not torch.allclose(torch.as_tensor(values).cpu(), want.values.cpu(), atol=1e-4):
                raise AssertionError("Right tokens, wrong values: return the logits themselves, largest first.")
    print("logit effects: correct.")
