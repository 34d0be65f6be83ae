"""Attention heads: data with repeats, scores from attention patterns, composition, OV copying and ablation."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from functools import partial
from typing import Literal, cast

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformer_lens.components import TransformerBlock

from interp_utils.core import hooks
from interp_utils.core.hooks import Hook

HEAD_KINDS = ("previous_token", "duplicate_token", "induction")
Head = tuple[int, int]  # (layer, head)
# A head counts as an induction head (lesson 02) when its induction score is at least this many times chance.
INDUCTION_CHANCE_FACTOR = 10.0


def repeated_segment_batch(
    batch: int,
    seq_len: int,
    d_vocab: int,
    min_len: int,
    max_len: int,
    generator: torch.Generator | None = None,
    bos: int = 0,
) -> tuple[Int[Tensor, "batch pos"], Bool[Tensor, "batch pos"]]:
    """Random tokens in which one segment of random length reappears later at a random offset.

    Returns the tokens (``bos`` first, other tokens drawn from ``1..d_vocab-1``) and a mask of the
    positions whose token can be predicted by induction (the second copy, after its first token).
    Random lengths and offsets mean no fixed positional pattern predicts the repeat.
    """
    if not 2 <= min_len <= max_len or 2 * max_len + 1 > seq_len:
        raise ValueError(
            f"Need 2 <= min_len <= max_len and 2 * max_len + 1 <= seq_len; got {min_len}, {max_len}, {seq_len}."
        )
    if d_vocab < 3:
        raise ValueError(f"d_vocab={d_vocab} is too small: need BOS plus at least two ordinary tokens.")
    g = generator or torch.Generator().manual_seed(0)
    tokens = torch.randint(1, d_vocab, (batch, seq_len), generator=g)
    tokens[:, 0] = bos
    mask = torch.zeros(batch, seq_len, dtype=torch.bool)
    lengths = torch.randint(min_len, max_len + 1, (batch,), generator=g).tolist()
    for i, length in enumerate(lengths):
        first = int(torch.randint(1, seq_len - 2 * length + 1, (1,), generator=g))
        second = int(torch.randint(first + length, seq_len - length + 1, (1,), generator=g))
        tokens[i, second : second + length] = tokens[i, first : first + length]
        mask[i, second + 1 : second + length] = True
    return tokens, mask


def head_masks(tokens: Int[Tensor, "batch pos"]) -> dict[str, Bool[Tensor, "batch dest src"]]:
    """For each kind of head, which source positions it should attend to from each destination.

    previous_token: src = dest - 1. duplicate_token: an earlier src holding the same token.
    induction: the src just after an earlier occurrence of dest's token (src < dest).
    """
    if tokens.ndim != 2:
        raise ValueError(f"tokens must be [batch, pos], got shape {tuple(tokens.shape)}.")
    n = tokens.shape[1]
    dest, src = torch.arange(n)[:, None], torch.arange(n)[None, :]
    earlier = (src < dest).to(tokens.device)
    same = tokens[:, :, None] == tokens[:, None, :]  # [batch, dest, src]
    after_same = torch.zeros_like(same)
    after_same[:, :, 1:] = same[:, :, :-1]  # token at src - 1 equals token at dest
    return {
        "previous_token": (src == dest - 1).to(tokens.device).expand_as(same),
        "duplicate_token": same & earlier,
        "induction": after_same & earlier,
    }


def score_patterns(
    patterns: Float[Tensor, "batch head dest src"], masks: dict[str, Bool[Tensor, "batch dest src"]]
) -> dict[str, Float[Tensor, " head"]]:
    """Attention on each mask's sources, averaged over the destinations that have any such source."""
    out = {}
    for kind, mask in masks.items():
        has_src = mask.any(-1)  # [batch, dest]
        if not has_src.any():
            raise ValueError(f"No destination has a {kind} source in these tokens; use tokens with repeats.")
        on_mask = (patterns * mask[:, None]).sum(-1)  # [batch, head, dest]
        out[kind] = (on_mask * has_src[:, None]).sum((0, 2)) / has_src.sum()
    return out


def attn_only_config(n_ctx: int, d_vocab: int, seed: int = 0, device: str = "cpu") -> HookedTransformerConfig:
    """The 2-layer attention-only model of Elhage et al. as notebook 02 trains it: 4 heads of 16 dimensions per
    layer, d_model 64, LayerNorm, no MLPs."""
    return HookedTransformerConfig(
        n_layers=2,
        d_model=64,
        n_heads=4,
        d_head=16,
        n_ctx=n_ctx,
        d_vocab=d_vocab,
        attn_only=True,
        normalization_type="LN",
        seed=seed,
        device=device,
    )


def attn_only_train_step(
    model: HookedTransformer, optimizer: torch.optim.Optimizer, tokens: Int[Tensor, "batch pos"]
) -> float:
    """One optimizer step on the next-token loss of ``tokens``; the loss before the step."""
    loss = model(tokens, return_type="loss")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


def attn_only_train(
    model: HookedTransformer,
    optimizer: torch.optim.Optimizer,
    steps: int,
    make_batch: Callable[[], Int[Tensor, "batch pos"]],
    eval_every: int,
    measure: Callable[[HookedTransformer], dict],
) -> tuple[list[dict], list[float]]:
    """Train with :func:`attn_only_train_step` on ``steps`` fresh batches, measuring at step 0 and every
    ``eval_every`` steps (the last one after the final update); the measurements and the per-step losses."""
    history: list[dict] = []
    losses: list[float] = []
    for step in range(steps + 1):
        if step % eval_every == 0:
            history.append({"step": step, **measure(model)})
        if step == steps:
            break
        losses.append(attn_only_train_step(model, optimizer, make_batch()))
    return history, losses


def icl_score(loss_per_token: Float[Tensor, "batch pred"], early: slice, late: slice) -> float:
    """In-context learning: the mean loss over the ``late`` predictions minus over the ``early`` ones."""
    return (loss_per_token[:, late].mean() - loss_per_token[:, early].mean()).item()


@torch.inference_mode()
def head_scores(model: HookedTransformer, tokens: Int[Tensor, "batch pos"]) -> dict[str, Float[Tensor, "layer head"]]:
    """Previous-token, duplicate-token and induction scores of every head on ``tokens``."""
    masks = head_masks(tokens.cpu())
    per_layer: list[dict[str, Tensor]] = []

    def record(pattern: Tensor, hook) -> None:
        per_layer.append(score_patterns(pattern.float().cpu(), masks))

    recorders: list[Hook] = [(name, record) for name in hooks.layer_names("pattern", model.cfg.n_layers)]
    model.run_with_hooks(tokens.to(model.cfg.device), return_type=None, fwd_hooks=recorders)
    return {kind: torch.stack([scores[kind] for scores in per_layer]) for kind in HEAD_KINDS}


def chance_scores(tokens: Int[Tensor, "batch pos"]) -> dict[str, float]:
    """The scores a head would get by attending uniformly to every position up to and including its own."""
    n = tokens.shape[1]
    uniform = torch.tril(torch.ones(n, n)) / torch.arange(1, n + 1)[:, None]
    patterns = uniform.expand(tokens.shape[0], 1, n, n)
    return {kind: score.item() for kind, score in score_patterns(patterns, head_masks(tokens.cpu())).items()}


def repeated_random_tokens(
    model: HookedTransformer, seq_len: int, batch: int, seed: int = 0
) -> Int[Tensor, "batch pos"]:
    """``[BOS] + R + R`` for ``batch`` random sequences R of ``seq_len`` ordinary tokens each."""
    if seq_len < 2 or batch < 1:
        raise ValueError(f"Need seq_len >= 2 and batch >= 1, got seq_len={seq_len}, batch={batch}.")
    if 2 * seq_len + 1 > model.cfg.n_ctx:
        raise ValueError(f"2 * seq_len + 1 = {2 * seq_len + 1} exceeds the model's context of {model.cfg.n_ctx}.")
    # without a tokenizer (a model built from a config), token 0 plays BOS, as in repeated_segment_batch
    special = set(model.tokenizer.all_special_ids) if model.tokenizer is not None else {0}
    allowed = torch.tensor([t for t in range(model.cfg.d_vocab) if t not in special])
    gen = torch.Generator().manual_seed(seed)
    rand = allowed[torch.randint(len(allowed), (batch, seq_len), generator=gen)]
    bos = torch.full((batch, 1), model.tokenizer.bos_token_id if model.tokenizer is not None else 0)
    return torch.cat([bos, rand, rand], dim=1).to(model.cfg.device)


def induction_scores(
    model: HookedTransformer, seq_len: int = 40, batch: int = 16, seed: int = 0
) -> tuple[Float[Tensor, "layer head"], float]:
    """Each head's induction score on repeated random tokens, and the chance level (uniform causal attention)."""
    tokens = repeated_random_tokens(model, seq_len, batch, seed)
    return head_scores(model, tokens)["induction"], chance_scores(tokens)["induction"]


def untrained_copy(model: HookedTransformer, seed: int = 0) -> HookedTransformer:
    """A freshly initialised model of ``model``'s shape and kind (weights drawn from ``seed``; the global random state
    is left as it was): the control of a head score, the same measurement where no head has learned anything."""
    cfg = copy.deepcopy(model.cfg)
    cfg.seed, cfg.init_weights = seed, True
    with torch.random.fork_rng(devices=[]):
        fresh = HookedTransformer(cfg, tokenizer=model.tokenizer)  # the tokenizer passed: nothing is downloaded
    return fresh.eval()


def top_heads(scores: Float[Tensor, "layer head"], k: int) -> list[Head]:
    """The ``k`` highest-scoring heads as (layer, head) pairs, best first."""
    n_heads = scores.shape[1]
    return [(int(i) // n_heads, int(i) % n_heads) for i in scores.flatten().topk(k).indices]


def head_label(head: Head) -> str:
    """``(5, 1)`` -> ``"5.1"``, the usual way of writing a head."""
    return f"{head[0]}.{head[1]}"


# ---------------------------------------------------------------- composition


def _qr_r(x: Float[Tensor, "... d r"]) -> Float[Tensor, "... r r"]:
    """R of the thin QR decomposition: ||Q R Y|| = ||R Y|| for Q with orthonormal columns."""
    return torch.linalg.qr(x).R


def composition_scores(
    model: HookedTransformer, mode: Literal["Q", "K", "V"]
) -> Float[Tensor, "layer1 head1 layer2 head2"]:
    """Q-, K- or V-composition of every earlier head's OV circuit into every later head (Elhage et al. 2021).

    score = ||W_OV^1 M^2||_F / (||W_OV^1||_F ||M^2||_F) with M = W_QK (Q), W_QK^T (K) or W_OV (V), in
    TransformerLens's row-vector convention. Pairs where the second head is not in a later layer are 0.
    Every factor has rank d_head, so the norms are computed from d_head x d_head matrices.
    """
    if mode not in ("Q", "K", "V"):
        raise ValueError(f"mode must be 'Q', 'K' or 'V', got {mode!r}.")
    W_Q, W_K, W_V, W_O = (w.detach().float().cpu() for w in (model.W_Q, model.W_K, model.W_V, model.W_O))
    # W_OV^1 = W_V W_O; M^2 = A B with A: [d_model, d_head], B: [d_head, d_model]
    A, B = {"Q": (W_Q, W_K.mT), "K": (W_K, W_Q.mT), "V": (W_V, W_O)}[mode]
    R_v, R_o, R_a, R_b = _qr_r(W_V), _qr_r(W_O.mT), _qr_r(A), _qr_r(B.mT)
    # [layer, head]; clamped so that a head with all-zero weights scores 0 rather than nan
    ov_norm = (R_v @ R_o.mT).flatten(-2).norm(dim=-1).clamp_min(1e-12)
    m_norm = (R_a @ R_b.mT).flatten(-2).norm(dim=-1).clamp_min(1e-12)
    n_layers = model.cfg.n_layers
    scores = torch.zeros(n_layers, model.cfg.n_heads, n_layers, model.cfg.n_heads)
    for layer in range(n_layers - 1):  # ||V O A B|| = ||R_v (O A) R_b^T||, one earlier layer at a time
        middle = torch.einsum("hrd,mgds->hmgrs", W_O[layer], A[layer + 1 :])
        product = R_v[layer][:, None, None] @ middle @ R_b[layer + 1 :].mT
        comp = product.flatten(-2).norm(dim=-1)
        scores[layer, :, layer + 1 :] = comp / ov_norm[layer][:, None, None] / m_norm[layer + 1 :]
    return scores


def composition_baseline(d_model: int, d_head: int, samples: int = 200, seed: int = 0) -> tuple[float, float]:
    """Mean and standard deviation of the composition score between independent random (Gaussian) heads."""
    g = torch.Generator().manual_seed(seed)
    a, b, c, d = (torch.randn(samples, *shape, generator=g) for shape in [(d_model, d_head), (d_head, d_model)] * 2)
    first, second = a @ b, c @ d
    scores = (first @ second).flatten(1).norm(dim=1) / first.flatten(1).norm(dim=1) / second.flatten(1).norm(dim=1)
    return scores.mean().item(), scores.std().item()


# ---------------------------------------------------------------- OV circuits


@torch.inference_mode()
def ov_eigen_copying(model: HookedTransformer) -> Float[Tensor, "layer head"]:
    """sum(λ) / sum(|λ|) over the eigenvalues λ of each head's full OV circuit W_E W_V W_O W_U.

    +1 for a head that copies tokens (all eigenvalues positive), -1 for one that suppresses them.
    Computed from the d_head x d_head matrix W_O W_U W_E W_V, which has the same nonzero eigenvalues.
    """
    W_E, W_U = model.W_E.detach().float().cpu(), model.W_U.detach().float().cpu()
    unembed_embed = W_U @ W_E  # [d_model, d_model]
    small = model.W_O.detach().float().cpu() @ unembed_embed @ model.W_V.detach().float().cpu()
    eig = torch.linalg.eigvals(small)
    return (eig.sum(-1) / eig.abs().sum(-1).clamp_min(1e-12)).real


@torch.inference_mode()
def ov_top1_copying(
    model: HookedTransformer, heads: Iterable[Head], n_tokens: int = 500, seed: int = 0
) -> dict[Head, float]:
    """For each head, the fraction of (sampled) tokens t whose full OV circuit W_E[t] W_OV W_U ranks t first."""
    g = torch.Generator().manual_seed(seed)
    n = min(n_tokens, model.cfg.d_vocab)
    sample = torch.randperm(model.cfg.d_vocab, generator=g)[:n]
    W_E, W_U = model.W_E.detach().float().cpu(), model.W_U.detach().float().cpu()
    out = {}
    for layer, head in heads:
        ov = model.W_V[layer, head].detach().float().cpu() @ model.W_O[layer, head].detach().float().cpu()
        hits = 0
        for chunk in sample.split(256):
            hits += ((W_E[chunk] @ ov @ W_U).argmax(-1) == chunk).sum().item()
        out[(layer, head)] = hits / n
    return out


@torch.inference_mode()
def copying_score(
    model: HookedTransformer, layer: int, head: int, tokens: Int[Tensor, " n"], k: int = 5, negative: bool = False
) -> float:
    """Wang et al.'s copying score: the share of ``tokens`` found among the top ``k`` logits when one head's OV circuit
    reads each token (its embedding after the first MLP, as if the head attended only to it) and its output goes
    straight through the final LayerNorm and the unembedding. ``negative`` scores the negated output."""
    tokens = tokens.to(model.W_E.device)
    x = model.W_E[tokens][:, None]  # [n, 1, d_model]
    block = cast(TransformerBlock, model.blocks[0])
    x = x + block.mlp(block.ln2(x))
    out = x @ model.W_V[layer, head] @ model.W_O[layer, head]
    logits = model.unembed(model.ln_final(-out if negative else out))[:, 0]
    return (logits.topk(k, -1).indices == tokens[:, None]).any(-1).float().mean().item()


def full_ov_circuit(model: HookedTransformer, layer: int, head: int) -> Float[Tensor, "vocab vocab"]:
    """W_E W_V W_O W_U: the logits a head adds for each token it attends to (rows: attended, columns: logits)."""
    return model.W_E @ model.W_V[layer, head] @ model.W_O[layer, head] @ model.W_U


def top1_copying(full_ov: Float[Tensor, "vocab vocab"]) -> float:
    """The fraction of tokens whose own logit is the largest in their row of a full OV circuit."""
    return (full_ov.argmax(-1) == torch.arange(full_ov.shape[0], device=full_ov.device)).float().mean().item()


def positional_qk(model: HookedTransformer, layer: int, head: int) -> Float[Tensor, "dest src"]:
    """The positional part of a head's attention scores: W_pos W_Q W_K^T W_pos^T / sqrt(d_head)."""
    W_pos = model.W_pos
    return (W_pos @ model.W_Q[layer, head]) @ (W_pos @ model.W_K[layer, head]).T / model.cfg.d_head**0.5


def remove_from_keys(k_input: Tensor, hook, output: Float[Tensor, "batch pos d_model"], receiver: int) -> Tensor:
    """Hook on ``hooks.name("k_input", layer)`` (split QKV input): take ``output`` out of the residual stream that
    the keys of head ``receiver`` read, and only theirs."""
    k_input[:, :, receiver] = k_input[:, :, receiver] - output
    return k_input


def key_removal_scores(
    model: HookedTransformer, tokens: Int[Tensor, "batch pos"], receiver: Head
) -> Float[Tensor, " head"]:
    """The induction score of head ``receiver`` with each head of the layer before taken out of its keys only (one
    head per run, queries and values intact); the model is left with its split QKV input off."""
    layer, head = receiver
    _, cache = model.run_with_cache(tokens, names_filter=hooks.name("z", layer - 1))
    z = cache[hooks.name("z", layer - 1)]
    out = torch.zeros(model.cfg.n_heads)
    model.set_use_split_qkv_input(True)
    for earlier in range(model.cfg.n_heads):
        written = torch.einsum("bpd,dm->bpm", z[:, :, earlier], model.W_O[layer - 1, earlier])
        hook = partial(remove_from_keys, output=written, receiver=head)
        with model.hooks(fwd_hooks=[(hooks.name("k_input", layer), hook)]):
            out[earlier] = head_scores(model, tokens)["induction"][layer, head]
    model.set_use_split_qkv_input(False)
    return out


# ---------------------------------------------------------------- ablation


@torch.inference_mode()
def mean_head_outputs(model: HookedTransformer, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "layer head d_head"]:
    """Each head's mean ``z`` (the attention-weighted values) over a batch and its positions."""
    means: list[Tensor] = []
    keep: list[Hook] = [
        (name, lambda z, hook: means.append(z.mean((0, 1)))) for name in hooks.layer_names("z", model.cfg.n_layers)
    ]
    model.run_with_hooks(tokens.to(model.cfg.device), return_type=None, fwd_hooks=keep)
    return torch.stack(means)


def head_ablation_hooks(heads: Iterable[Head], means: Float[Tensor, "layer head d_head"] | None = None) -> list[Hook]:
    """Forward hooks for ``run_with_hooks`` that replace each head's ``z`` with zero, or with ``means``."""
    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        by_layer.setdefault(int(layer), []).append(int(head))
    return z_replacement_hooks(
        {layer: (hs, 0.0 if means is None else means[layer, hs]) for layer, hs in by_layer.items()}
    )


def z_replacement_hooks(replacements: dict[int, tuple[list[int], Tensor | float]]) -> list[Hook]:
    """Hooks setting ``z[:, :, heads]`` of each layer to a value: a number, or a tensor that broadcasts
    against ``[batch, pos, len(heads), d_head]`` (one vector per head, or per prompt and position)."""

    def make(heads_here: list[int], value: Tensor | float) -> Callable:
        def hook(z: Tensor, hook) -> Tensor:
            z[:, :, heads_here] = value if isinstance(value, float) else value.to(z.device, z.dtype)
            return z

        return hook

    return [(hooks.name("z", layer), make(hs, value)) for layer, (hs, value) in sorted(replacements.items())]
