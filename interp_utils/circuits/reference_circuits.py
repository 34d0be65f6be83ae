"""Circuits to score discovery methods against, as edges of an :class:`~interp_utils.circuits.edge_graph.EdgeGraph`:
a model whose circuit is set by hand, the induction circuit, and the IOI circuit from head classes (Wang et al. 2022,
found by :func:`interp_utils.circuits.ioi_circuit.head_classes`, turned into edges with Conmy et al. 2023's rules)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from jaxtyping import Bool, Int
from torch import Tensor
from transformer_lens import HookedTransformer, HookedTransformerConfig

from interp_utils.circuits.edge_graph import EdgeGraph
from interp_utils.circuits.heads import Head, head_label

N_CTX, VOCAB, SLOT = 64, 128, 128  # the hand-set model: positions, tokens, width of each residual-stream slot


def handset_model(distractors: bool = True, device: str = "cpu") -> HookedTransformer:
    """A 2-layer attention-only induction model whose weights are set by hand. Head 0.0 attends to the previous
    position and copies its token into the "previous" slot; head 1.0 (query: the current token, key: the previous
    token) copies the token after the last occurrence of the current one into the "output" slot, which is all the
    unembedding reads. With ``distractors``, head 0.1 averages the tokens so far into a "context" slot and head 1.1
    attends by that average and writes the tokens it finds into a "scratch" slot that nothing reads: real
    computations, irrelevant to the output. Without them, 0.1 and 1.1 do nothing.

    Residual stream slots: [token | previous | output | context | scratch | position]."""
    n_slots = 5 if distractors else 3
    cfg = HookedTransformerConfig(
        n_layers=2, d_model=n_slots * SLOT + N_CTX, n_heads=2, d_head=SLOT + N_CTX, n_ctx=N_CTX, d_vocab=VOCAB,
        attn_only=True, normalization_type=None, seed=0, device=device,
    )  # fmt: skip
    model = HookedTransformer(cfg)
    tok, prev, out, context, scratch = (slice(i * SLOT, (i + 1) * SLOT) for i in range(5))
    pos = slice(n_slots * SLOT, None)
    eye = torch.eye(SLOT)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.W_E[:, tok] = torch.eye(VOCAB)
        model.W_pos[:, pos] = torch.eye(N_CTX)
        shift = torch.zeros(N_CTX, N_CTX)
        shift[torch.arange(1, N_CTX), torch.arange(N_CTX - 1)] = 1.0
        attn0: Any = model.blocks[0].attn
        attn1: Any = model.blocks[1].attn
        attn0.W_Q[0, pos, SLOT:] = 200 * torch.eye(N_CTX)  # 0.0: position p attends to p - 1
        attn0.W_K[0, pos, SLOT:] = shift.T
        attn0.W_V[0, tok, :SLOT] = eye
        attn0.W_O[0, :SLOT, prev] = eye
        attn1.W_Q[0, tok, :SLOT] = 200 * eye  # 1.0: attends where the previous token is the current token
        attn1.W_K[0, prev, :SLOT] = eye
        attn1.W_V[0, tok, :SLOT] = eye
        attn1.W_O[0, :SLOT, out] = eye
        if distractors:
            attn0.W_V[1, tok, :SLOT] = eye  # 0.1: no query or key weights, so a uniform average of the tokens so far
            attn0.W_O[1, :SLOT, context] = eye
            attn1.W_Q[1, context, :SLOT] = 5 * eye  # 1.1: attends to the tokens most common so far...
            attn1.W_K[1, tok, :SLOT] = eye
            attn1.W_V[1, tok, :SLOT] = eye
            attn1.W_O[1, :SLOT, scratch] = eye  # ... and writes them where nothing reads
        model.W_U[out, :] = 30 * torch.eye(VOCAB)
    model.tokenizer = None
    return model


def edge_mask(graph: EdgeGraph, pairs: Sequence[tuple[str, str]]) -> Bool[Tensor, "up down"]:
    """The [upstream, downstream] mask of the named edges, e.g. ``("embed", "1.0.q")``; an unknown name or a pair
    that is not an edge raises."""
    mask = torch.zeros_like(graph.allowed)
    for up, down in pairs:
        if up not in graph.upstream or down not in graph.downstream:
            raise ValueError(f"{up!r} → {down!r}: unknown node; upstream nodes look like 'embed', '3.1', 'mlp 2', "
                             "downstream ones like '3.1.q', 'mlp 2', 'logits'.")  # fmt: skip
        u, d = graph.upstream.index(up), graph.downstream.index(down)
        if not graph.allowed[u, d]:
            raise ValueError(f"{up!r} → {down!r} is not an edge: {up} is computed after {down} reads.")
        mask[u, d] = True
    return mask


HANDSET_CIRCUIT = [("embed", "0.0.v"), ("0.0", "1.0.k"), ("embed", "1.0.q"), ("embed", "1.0.v"), ("1.0", "logits")]


def repeated_pairs(
    n: int, half: int, seed: int = 0, vocab: int = VOCAB, bos: int | None = None
) -> tuple[Int[Tensor, "n pos"], Int[Tensor, "n pos"]]:
    """Induction prompts: ``n`` sequences of ``half`` distinct random tokens, each repeated once (after ``bos`` when
    given, and then drawn from 1..vocab-1), and corrupted twins: other random sequences, repeated the same way."""
    g = torch.Generator().manual_seed(seed)
    low = 0 if bos is None else 1  # with a BOS token, the others are drawn from 1..vocab-1 (BOS is 0)
    if half > vocab - low:
        raise ValueError(f"half ({half}) must be at most the {vocab - low} tokens to draw from: a half's are distinct.")
    first = torch.stack([low + torch.randperm(vocab - low, generator=g)[:half] for _ in range(2 * n)])
    seqs = torch.cat([first, first], 1)
    if bos is not None:
        seqs = torch.cat([torch.full((2 * n, 1), bos), seqs], 1)
    return seqs[:n], seqs[n:]


def next_token_logit(tokens: Int[Tensor, "batch pos"], start: int) -> Callable[[Tensor], Tensor]:
    """A task metric for induction: the mean logit of the clean next token at positions ``start`` onwards (the
    repeated half). A logit, not a log-probability: a saturated softmax at the output would hide the gradients."""
    targets = tokens[:, start + 1 :]

    def metric(logits: Tensor) -> Tensor:
        return logits[:, start:-1].gather(-1, targets.to(logits.device)[..., None]).mean()

    return metric


def induction_reference(graph: EdgeGraph, previous: Sequence[Head], induction: Sequence[Head]) -> Tensor:
    """The induction circuit: the embeddings → each previous-token head's values; each previous-token head → each
    later induction head's keys; the embeddings → the induction heads' queries and values; induction heads → logits."""
    pairs = [("embed", f"{head_label(p)}.v") for p in previous] + [(head_label(i), "logits") for i in induction]
    pairs += [("embed", f"{head_label(i)}.{x}") for i in induction for x in "qv"]
    pairs += [(head_label(p), f"{head_label(i)}.k") for p in previous for i in induction if p[0] < i[0]]
    return edge_mask(graph, pairs)


# Conmy et al.'s rules for the IOI circuit's edges (their special_connections): (sender class, receiver class, the
# receiver's inputs). "input" is the embeddings; "output" the logits. Their "input" also holds the MLPs and their
# "output" the MLPs' inputs: those edges are kept anyway (see class_reference).
IOI_CONNECTIONS = [
    ("input", "previous-token", "qkv"), ("input", "duplicate-token", "qkv"), ("input", "S-inhibition", "q"),
    ("input", "negative name mover", "kv"), ("input", "name mover", "kv"), ("input", "backup name mover", "kv"),
    ("previous-token", "induction", "kv"), ("induction", "S-inhibition", "kv"),
    ("duplicate-token", "S-inhibition", "kv"),
    ("S-inhibition", "negative name mover", "q"), ("S-inhibition", "name mover", "q"),
    ("S-inhibition", "backup name mover", "q"), ("negative name mover", "output", ""), ("name mover", "output", ""),
    ("backup name mover", "output", ""),
]  # fmt: skip


def class_pairs(graph: EdgeGraph, classes: Mapping[str, Sequence[Head]]) -> list[tuple[str, str]]:
    """The (sender, receiver) names that :data:`IOI_CONNECTIONS` gives for these head classes, where they are edges
    (the sender computed before the receiver reads)."""
    pairs: list[tuple[str, str]] = []
    for sender, receiver, inputs in IOI_CONNECTIONS:
        ups = ["embed"] if sender == "input" else [head_label(h) for h in classes.get(sender, [])]
        downs = ["logits"] if receiver == "output" else [
            f"{head_label(h)}.{x}" for h in classes.get(receiver, []) for x in inputs
        ]  # fmt: skip
        for u in ups:
            pairs += [(u, d) for d in downs if graph.allowed[graph.upstream.index(u), graph.downstream.index(d)]]
    return sorted(set(pairs))


def class_reference(graph: EdgeGraph, classes: Mapping[str, Sequence[Head]]) -> Bool[Tensor, "up down"]:
    """The IOI circuit's edges from head classes, by Conmy et al.'s rule (``get_ioi_true_edges`` in their
    repository, acdc/ioi/utils.py), step by step: (1) every edge into or out of a head outside the classes goes;
    (2) into each circuit head, the edges from the embeddings and from other heads go, and so does its edge to the
    logits; (3) :func:`class_pairs` adds back the connections of :data:`IOI_CONNECTIONS`. What stays from the full
    graph is the MLPs' plumbing: edges among the embeddings, MLPs and logits, from an MLP into a circuit head's q/k/v
    and from a circuit head into an MLP. So only the name-mover classes reach the logits, and the embeddings reach a
    circuit head only through the inputs the table lists."""
    heads = {head_label(h) for members in classes.values() for h in members}
    mask = torch.zeros_like(graph.allowed)
    for u, up in enumerate(graph.upstream):
        for d, down in enumerate(graph.downstream):
            reader = None if down == "logits" or down.startswith("mlp") else down.rsplit(".", 1)[0]
            sender_head = up != "embed" and not up.startswith("mlp")
            if not graph.allowed[u, d] or (sender_head and up not in heads) or (reader and reader not in heads):
                continue  # (1) a head outside the circuit
            if (reader and (up == "embed" or sender_head)) or (sender_head and down == "logits"):
                continue  # (2) embeddings or heads into a circuit head, a circuit head into the logits
            mask[u, d] = True
    return mask | edge_mask(graph, class_pairs(graph, classes))  # (3) the listed connections
