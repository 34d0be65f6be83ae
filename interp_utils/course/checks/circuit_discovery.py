"""Checks for notebook 06's exercises (automated circuit discovery): cases worked out by hand, then the suite's
reference implementations in :mod:`interp_utils.circuits.edge_graph`, :mod:`interp_utils.circuits.discovery` and
:mod:`interp_utils.circuits.reference_circuits`, with the usual wrong answers recognised and named."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from interp_utils.circuits import discovery, edge_graph
from interp_utils.circuits import reference_circuits as rc
from interp_utils.circuits.edge_graph import EdgeGraph
from interp_utils.circuits.heads import head_label
from interp_utils.course.checks import answered, close
from interp_utils.course.checks.circuit_discovery_core import _graph, _random_case
from interp_utils.course.checks.circuit_discovery_core import check_eap as check_eap
from interp_utils.course.checks.circuit_discovery_core import check_eap_ig as check_eap_ig
from interp_utils.course.checks.circuit_discovery_core import check_eap_scores as check_eap_scores
from interp_utils.course.checks.circuit_discovery_core import check_faithfulness_curve as check_faithfulness_curve
from interp_utils.course.checks.circuit_discovery_core import check_ig_inputs as check_ig_inputs
from interp_utils.course.checks.circuit_discovery_core import check_reader_gradients as check_reader_gradients
from interp_utils.course.checks.circuit_discovery_core import check_writer_outputs as check_writer_outputs


@answered
def check_count_edges(fn: Callable[[int, int, bool], int]) -> None:
    got = fn(1, 1, False)
    if not isinstance(got, int):
        raise AssertionError(f"Return the number of edges as an int, got {type(got).__name__}.")
    if got == 3:
        raise AssertionError("One layer of one head, no MLP: 3 edges counts the head's inputs only. Add the logits' "
                             "edges: the logits read every writer (the embeddings and the head).")  # fmt: skip
    if got != 5:
        raise AssertionError(
            f"One layer of one head, no MLP: expected 5 edges, got {got}. The embeddings feed the head's query, key "
            "and value inputs (three downstream nodes, three edges), and the logits read the embeddings and the head."
        )
    for layers, n_heads in [(2, 1), (2, 3), (4, 4)]:
        want = _graph(layers, n_heads, False).n_edges
        if fn(layers, n_heads, False) != want:
            raise AssertionError(
                f"{layers} layers of {n_heads} heads, no MLPs: expected {want} edges, got {fn(layers, n_heads, False)}."
                " A head's three inputs each read the embeddings and every head of the earlier layers (not its own)."
            )
    for layers, n_heads in [(1, 1), (2, 3), (12, 12)]:
        want = _graph(layers, n_heads, True).n_edges
        got = fn(layers, n_heads, True)
        if got != want:
            raise AssertionError(
                f"{layers} layers of {n_heads} heads with MLPs: expected {want} edges, got {got}. An MLP reads the "
                "embeddings, every earlier head and MLP, and the heads of its own layer (they run before it); a head "
                "reads the earlier MLPs too."
            )


@answered
def check_patched_input(fn: Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]) -> None:
    current = torch.tensor([1.0, 2.0])
    outputs = torch.tensor([[1.0, 0.0], [0.0, 2.0]])  # two senders, which sum to the input
    corrupt = torch.tensor([[3.0, 0.0], [0.0, -1.0]])
    got = fn(current, outputs, corrupt, torch.tensor([1.0, 0.0]))
    if not isinstance(got, Tensor) or got.shape != (2,):
        raise AssertionError(f"Return the receiver's input, shaped like current_input (2,), got {got!r}.")
    if torch.allclose(got, torch.tensor([3.0, 0.0])):
        raise AssertionError(
            "Patching the first sender returned the corrupted output alone: the receiver still reads the other "
            "senders. Add (corrupted − current output) of the patched senders to its input instead."
        )
    if torch.allclose(got, torch.tensor([-1.0, 2.0])):
        raise AssertionError("The sign is reversed: add corrupted − current, which takes the sender's share to its "
                             "corrupted value.")  # fmt: skip
    if not torch.allclose(got, torch.tensor([3.0, 2.0])):
        raise AssertionError(
            f"Input [1, 2] from senders [1, 0] and [0, 2], the first patched to [3, 0]: expected [3, 2], got "
            f"{got.tolist()}."
        )
    g = torch.Generator().manual_seed(0)
    outputs, corrupt = torch.randn(2, 3, 4, 5, 8, generator=g)
    current = outputs.sum(-2) + 0.5  # a bias the senders do not write
    patched = torch.tensor([0.0, 1.0, 0.0, 1.0, 1.0])
    want = current + torch.einsum("u,bpud->bpd", patched, corrupt - outputs)
    got = fn(current, outputs, corrupt, patched)
    if got.shape != want.shape or not torch.allclose(got, want, atol=1e-5):
        raise AssertionError(
            "On a batch [2, 3] with five senders, three patched, the result differs from the reference: sum the "
            "differences over the patched senders (the -2 axis), and keep the batch and position axes."
        )
    if not torch.equal(fn(current, outputs, corrupt, torch.zeros(5)), current):
        raise AssertionError("With no sender patched the input must come back unchanged.")


@answered
def check_kl_from_clean(fn: Callable[[Tensor, Tensor, Tensor], Tensor]) -> None:
    clean = torch.tensor([[[0.0, 0.0], [2.0, 0.0]]])
    where = torch.tensor([[False, True]])
    same = fn(clean, clean, where)
    if not isinstance(same, Tensor) or same.ndim != 0:
        raise AssertionError(f"Return a scalar tensor (the mean KL over the chosen positions), got {same!r}.")
    close(same.item(), 0.0, "KL of the clean run from itself", "It must be 0.")
    g = torch.Generator().manual_seed(1)
    clean, patched = torch.randn(2, 3, 5, 7, generator=g)
    where = torch.tensor([[True, False, True, True, False], [False, False, True, False, True], [False] * 4 + [True]])
    want = discovery.kl_divergence(clean, where)(patched).item()
    p, q = clean.log_softmax(-1), patched.log_softmax(-1)
    reversed_kl = (q.exp() * (q - p)).sum(-1)[where].mean().item()
    got = fn(clean, patched, where).item()
    if abs(got - reversed_kl) < 1e-5:
        raise AssertionError("That is KL(patched ‖ clean). ACDC measures KL(clean ‖ patched): the clean probabilities "
                             "weight the log-ratio.")  # fmt: skip
    if abs(got - (p.exp() * (p - q)).sum(-1).mean().item()) < 1e-5:
        raise AssertionError("Average over the positions where `where` is True only (the answer positions).")
    close(got, want, "KL(clean ‖ patched) on random logits", "Use log_softmax over the vocabulary, sum over it, then "
          "average over the chosen positions.", tol=1e-5)  # fmt: skip


@answered
def check_patch_one_edge(fn: Callable[..., float]) -> None:
    model, graph, tokens, corrupt, metric = _random_case()
    recorded = edge_graph.record_outputs(model, graph, corrupt)
    with torch.inference_mode():
        clean = float(metric(model(tokens)))
    cases = [("embed", (1, 0, "v")), ((1, 0), "logits"), ((0, 0), (1, 0, "k")), ((0, 1), (1, 1, "q")),
             ("embed", (0, 0, "v")), ((0, 0), "logits")]  # fmt: skip
    for sender, receiver in cases:
        up = "embed" if sender == "embed" else head_label(sender)  # type: ignore[arg-type]
        down = "logits" if receiver == "logits" else f"{receiver[0]}.{receiver[1]}.{receiver[2]}"
        u, d = graph.upstream.index(up), graph.downstream.index(down)
        everywhere = graph.allowed.clone() & False
        everywhere[u] = graph.allowed[u]
        every_head = graph.allowed.clone() & False
        if down != "logits":
            for h in range(graph.n_heads):
                every_head[u, graph.downstream.index(f"{receiver[0]}.{h}.{receiver[2]}")] = True
        one = graph.allowed.clone() & False
        one[u, d] = True
        effects = edge_graph.masked_metrics(model, graph, tokens, recorded, torch.stack([one, everywhere, every_head]),
                                       metric) - clean  # fmt: skip
        got = fn(model, tokens, corrupt, sender, receiver, metric)
        if not isinstance(got, float):
            raise AssertionError(f"Return the change in the metric as a Python float, got {type(got).__name__}.")
        want = effects[0].item()
        if abs(got - want) <= 1e-4 * max(1.0, abs(want)):
            continue
        if abs(got + want) < 0.1 * abs(want):  # about −want (LayerNorm bends it a little)
            raise AssertionError(f"{up} → {down}: the sign is reversed. Return metric(patched) − metric(clean).")
        if up != "embed" and abs(got - effects[1].item()) < 1e-4:
            raise AssertionError(f"{up} → {down}: that patches the sender's output everywhere (activation patching), "
                                 "so every head after it reads the corrupted value. Patch only what flows along the "
                                 "edge: add the difference to this receiver's input.")  # fmt: skip
        if down != "logits" and abs(got - effects[2].item()) < 1e-4:
            raise AssertionError(
                f"{up} → {down}: every head of layer {receiver[0]} got the patch. Each head has its own copy of its "
                "input (the head axis of q_input): patch that head's only."
            )
        close(got, want, f"{up} → {down}", "Run the clean tokens once more with a hook on the receiver's own input "
              "(hooks.name('q_input', layer) and so on, or the last resid_post for the logits) that adds the sender's "
              "corrupted minus clean output, for that head only.", tol=1e-4)  # fmt: skip


def _acdc_variant(graph, measure, tau, backwards=True, update=True, orphans=True, signed=True):
    """ACDC's search with one of its rules turned off, to recognise a learner's answer that misses it (``signed``
    False: the size of the change compared with τ, not the increase)."""
    kept = graph.allowed.clone()
    current = measure(graph.allowed & ~kept)
    order = range(len(graph.downstream))
    for down in reversed(order) if backwards else order:
        node = discovery.owner(graph, down)
        if orphans and node is not None and not kept[node].any():
            kept[:, down] = False
            continue
        for up in reversed(kept[:, down].nonzero().flatten().tolist()):
            kept[up, down] = False
            value = measure(graph.allowed & ~kept)
            if (value - current if signed else abs(value - current)) < tau:
                current = value if update else current
            else:
                kept[up, down] = True
    return kept


def cancelling_measure(graph: EdgeGraph) -> Callable[[Tensor], float]:
    """A distance that removing an edge can lower. ACDC visits 1.1 → logits, 1.0 → logits, then 0.1 → logits: the
    first two each add 0.2 (removed at τ = 0.3, the distance is then 0.4), the third pulls it back by 0.4, to 0. A
    search that compares the increase with τ removes it; one that compares the size of the change keeps it."""
    shift = torch.zeros(graph.allowed.shape)
    for (up, down), value in ((("1.1", "logits"), 0.2), (("1.0", "logits"), 0.2), (("0.1", "logits"), -0.4)):
        shift[graph.upstream.index(up), graph.downstream.index(down)] = value

    def measure(patched: Tensor) -> float:
        return float((shift * patched).sum().abs())

    return measure


@answered
def check_acdc_search(fn: Callable[..., Tensor]) -> None:
    graph = _graph(2, 2, False)
    g = torch.Generator().manual_seed(3)
    weights = torch.rand(graph.allowed.shape, generator=g) ** 3 * graph.allowed
    weights[torch.rand(graph.allowed.shape, generator=g) < 0.3] = 0.0  # edges that change nothing

    def growing(patched: Tensor) -> float:  # a distance that grows faster than the sum of what is patched
        return float((weights * patched).sum() ** 2 + (weights * patched).sum())

    for measure, tau in ((growing, 0.02), (growing, 0.1), (growing, 0.5), (cancelling_measure(graph), 0.3)):
        got = fn(graph, measure, tau)
        if not isinstance(got, Tensor) or got.shape != graph.allowed.shape or got.dtype != torch.bool:
            shape = tuple(graph.allowed.shape)
            raise AssertionError(f"Return the kept edges as a bool [upstream, downstream] matrix {shape}.")
        want, _ = discovery.acdc_search(graph, measure, tau)
        if torch.equal(got, want):
            continue
        hints = [
            (dict(backwards=False), "Visit the downstream nodes from the logits backwards (reversed order): a "
             "node's outgoing edges must be settled before its inputs are."),
            (dict(update=False), "After removing an edge, the circuit so far is the new baseline: set the current "
             "metric to the value just measured."),
            (dict(orphans=False), "When no kept edge leaves a node, remove its incoming edges without measuring: its "
             "output no longer reaches the logits."),
            (dict(signed=False), "Compare the increase (value − current) with τ, not its size: a removal that brings "
             "the output closer to the full model's lowers the metric, and the edge should go."),
        ]  # fmt: skip
        for flags, hint in hints:
            if torch.equal(got, _acdc_variant(graph, measure, tau, **flags)):
                raise AssertionError(f"τ = {tau}: {hint}")
        raise AssertionError(f"τ = {tau}: {int(got.sum())} edges kept, the reference keeps {int(want.sum())}. Remove "
                             "an edge when the metric grows by less than τ, and visit each node's senders from the "
                             "latest back.")  # fmt: skip
    if fn(graph, growing, 0.0).sum() != graph.n_edges:
        raise AssertionError("τ = 0 must keep every edge that changes the metric: remove only when it grows by less "
                             "than τ (strictly).")  # fmt: skip


@answered
def check_roc_points(fn: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]) -> None:
    truth = torch.tensor([True, True, False, False])
    fpr, tpr = fn(torch.tensor([4.0, -3.0, 2.0, 1.0]), truth)
    if fpr[0] != 0 or tpr[0] != 0 or fpr[-1] != 1 or tpr[-1] != 1:
        raise AssertionError("The curve runs from (0, 0), where no edge is kept, to (1, 1), where every edge is.")
    if tpr[1] == 0.5 and fpr[2] == 0.5:
        raise AssertionError("Rank by |score|: an edge whose patch lowers the metric matters as much as one that "
                             "raises it.")  # fmt: skip
    fpr, tpr = fn(torch.tensor([2.0, 1.0, 2.0, 0.5]), truth)
    if len(fpr) == 5:
        raise AssertionError("Tied scores enter together, in one step: a threshold cannot separate them.")
    for scores in (torch.randn(30), torch.randint(0, 4, (30,)).float()):
        labels = torch.rand(30) < 0.3
        labels[:2] = torch.tensor([True, False])
        want = discovery.roc(scores, labels)
        got = fn(scores, labels)
        if not all(torch.allclose(a.double(), b.double()) for a, b in zip(got, want, strict=True)):
            raise AssertionError("On 30 random scores the curve differs from the reference: one point per distinct "
                                 "|score|, from the largest down, with the rates of edges at or above it.")  # fmt: skip


@answered
def check_area_under(fn: Callable[[Tensor, Tensor], float]) -> None:
    got = fn(torch.tensor([0.0, 0.5, 1.0]), torch.tensor([0.0, 1.0, 1.0]))
    close(float(got), 0.75, "Area under (0, 0) → (0.5, 1) → (1, 1)", "Use trapezoids: a step where both rates grow "
          "is a diagonal (here half of 0.5 × 1, plus 0.5).")  # fmt: skip
    diagonal = float(fn(torch.tensor([0.0, 1.0]), torch.tensor([0.0, 1.0])))
    close(diagonal, 0.5, "The diagonal", "A random ranking gives 0.5.")
    fpr, tpr = discovery.roc(torch.randn(40), torch.rand(40) < 0.4)
    close(float(fn(fpr, tpr)), discovery.auc(fpr, tpr), "A random ROC curve", "Sum (x₁ − x₀)(y₀ + y₁) / 2.")


@answered
def check_top_n(fn: Callable[[Tensor, int], Tensor]) -> None:
    scores = torch.tensor([0.1, -5.0, 2.0, 0.3])
    got = fn(scores, 2)
    if not isinstance(got, Tensor) or got.dtype != torch.bool or got.shape != (4,):
        raise AssertionError("Return a bool mask with one entry per edge.")
    if got.tolist() == [False, False, True, True]:
        raise AssertionError("Take the largest |score|: -5 is the strongest edge here.")
    if got.tolist() == [True, True, False, False] or got.tolist() == [True, False, False, True]:
        raise AssertionError("Keep the n largest |scores|, not the smallest.")
    if got.tolist() != [False, True, True, False]:
        raise AssertionError(f"Top 2 of |[0.1, -5, 2, 0.3]|: expected the second and third, got {got.tolist()}.")
    if int(fn(scores, 0).sum()) != 0 or int(fn(scores, 4).sum()) != 4:
        raise AssertionError("n = 0 keeps nothing and n = 4 keeps every edge.")


@answered
def check_faithfulness(fn: Callable[[float, float, float], float]) -> None:
    close(float(fn(3.0, 3.0, 1.0)), 1.0, "The clean value", "It must map to 1.")
    close(float(fn(1.0, 3.0, 1.0)), 0.0, "The corrupted value", "It must map to 0: subtract it first.")
    close(float(fn(2.5, 3.0, 1.0)), 0.75, "2.5 between corrupted 1 and clean 3", "(value − corrupted) / (clean − "
          "corrupted).")  # fmt: skip
    close(float(fn(-1.0, -4.0, 2.0)), 0.5, "A metric that falls on the clean run", "Divide by clean − corrupted, "
          "sign included.")  # fmt: skip


@answered
def check_class_edges(fn: Callable[..., set]) -> None:
    graph = _graph(4, 4, True)
    classes = {"name mover": [(3, 1)], "S-inhibition": [(2, 3), (3, 0)], "induction": [(1, 0)],
               "duplicate-token": [(0, 2)], "previous-token": [(0, 1), (1, 3)]}  # fmt: skip
    got = fn(graph, classes, rc.IOI_CONNECTIONS)
    want = set(rc.class_pairs(graph, classes))
    if not isinstance(got, set):
        raise AssertionError("Return a set of (sender, receiver) name pairs such as ('2.3', '3.1.q').")
    if ("3.0", "3.1.q") in got or ("1.3", "1.0.k") in got:
        raise AssertionError("A head cannot send to a head of its own layer or an earlier one: keep only pairs that "
                             "are edges (graph.allowed).")  # fmt: skip
    if ("2.3", "3.1.k") in got:
        raise AssertionError("Use only the receiver inputs the rule names: S-inhibition heads reach name movers' "
                             "queries, not their keys or values.")  # fmt: skip
    if got != want:
        raise AssertionError(f"Missing {sorted(want - got)[:4]}, extra {sorted(got - want)[:4]}.")


@answered
def check_induction_edges(fn: Callable[..., set]) -> None:
    graph = _graph(2, 4, False)
    previous, induction = [(0, 1), (0, 2)], [(1, 0), (1, 3)]
    got = fn(previous, induction)
    mask = rc.induction_reference(graph, previous, induction)
    want = {(graph.upstream[u], graph.downstream[d]) for u, d in mask.nonzero().tolist()}
    if not isinstance(got, set):
        raise AssertionError("Return a set of (sender, receiver) name pairs such as ('0.1', '1.0.k').")
    if ("0.1", "1.0.q") in got:
        raise AssertionError("The previous-token head's output is read by the induction head's keys (K-composition), "
                             "not its queries.")  # fmt: skip
    if ("embed", "0.1.v") not in got:
        raise AssertionError("The previous-token head moves the token it attends to: the embeddings feed its values.")
    if got != want:
        raise AssertionError(f"Missing {sorted(want - got)}, extra {sorted(got - want)}.")
