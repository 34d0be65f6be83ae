"""circuit-tracer interop: our transcoders (per-layer or cross-layer) as circuit-tracer's replacement model, its
attribution graph of the same prompt, and the comparison of its graph, pruning and scores with ours (the one copy the
notebook, the tests and the benchmark use).

The suite drives circuit-tracer 0.5.0 through its TransformerLens backend only. That release, the only one on the
package index, was built by a third party (github.com/Caerii/circuit-tracer) from the official repository's code of
March 2026 (official commit 6d64f60, refactored); its attribution, pruning and score code are the official ones, but
later official fixes (such as the CLT error-node id collision fix) are not in it. Its nnsight backend was built
against nnsight 0.6 and is not used here.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass

import torch
from jaxtyping import Int
from torch import Tensor
from transformer_lens import HookedTransformer

from interp_utils.dictionaries.clt import CrossLayerTranscoder
from interp_utils.dictionaries.sae import SAE
from interp_utils.dictionaries.transcoders import Transcoders, as_replacement
from interp_utils.tracing.attribution_graph import AttributionGraph, graph_scores, prune


class _Activation(torch.nn.Module):
    """Our transcoders' nonlinearity, for circuit-tracer (its TopK has no ReLU on the kept values)."""

    def __init__(self, tc: SAE | CrossLayerTranscoder):
        super().__init__()
        self.tc = [tc]  # a list, so the transcoder is not registered as a submodule

    def forward(self, pre: Tensor) -> Tensor:
        return self.tc[0].activate(pre)


def _circuit_tracer_set(model: HookedTransformer, transcoders: Transcoders | CrossLayerTranscoder):
    """Our transcoders in circuit-tracer's formats, scales folded into the weights: a ``TranscoderSet`` (W_enc and
    W_dec [d_sae, d] per layer) or a ``CrossLayerTranscoder`` (W_enc [layer, d_sae, d], W_dec[s] [d_sae, layers
    s.., d])."""
    from circuit_tracer.transcoder.cross_layer_transcoder import CrossLayerTranscoder as CircuitTracerCLT
    from circuit_tracer.transcoder.single_layer_transcoder import SingleLayerTranscoder, TranscoderSet

    as_replacement(model, transcoders)
    device, reads, writes = model.W_E.device, "ln2.hook_normalized", "hook_mlp_out"
    if isinstance(transcoders, CrossLayerTranscoder):
        clt, cfg = transcoders, transcoders.cfg
        ct_clt = CircuitTracerCLT(
            cfg.n_layers, cfg.d_sae, cfg.d_model, lazy_decoder=False, feature_input_hook=reads,
            feature_output_hook=writes, device=device, dtype=torch.float32,
        )  # fmt: skip
        ct_clt.activation_function = _Activation(clt)  # type: ignore[assignment]
        with torch.no_grad():
            ct_clt.W_enc.copy_((clt.W_enc / clt.in_scale[:, None, None]).transpose(1, 2))
            ct_clt.b_enc.copy_(clt.b_enc)
            ct_clt.b_dec.copy_(clt.b_dec * clt.out_scale[:, None])
            for s, W in enumerate(clt.W_dec):
                ct_clt.W_dec[s].copy_(W * clt.out_scale[s:, None])
        return ct_clt
    converted = {}
    for layer, tc in transcoders.items():
        d_model, d_sae = tc.cfg.d_in, tc.cfg.d_sae
        ct = SingleLayerTranscoder(d_model, d_sae, _Activation(tc), layer, device=device, dtype=torch.float32)
        with torch.no_grad():
            ct.W_enc.copy_((tc.W_enc / tc.in_scale).T)
            ct.b_enc.copy_(tc.b_enc)
            ct.W_dec.copy_(tc.W_dec * tc.out_scale)
            ct.b_dec.copy_(tc.b_dec * tc.out_scale)
        converted[layer] = ct
    return TranscoderSet(converted, feature_input_hook=reads, feature_output_hook=writes)


def to_circuit_tracer(model: HookedTransformer, transcoders: Transcoders | CrossLayerTranscoder):
    """The model with our transcoders (per-layer or cross-layer) as a circuit-tracer ``ReplacementModel``."""
    import re

    from circuit_tracer.replacement_model.replacement_model_transformerlens import TransformerLensReplacementModel

    replacement = TransformerLensReplacementModel.from_config(model.cfg, _circuit_tracer_set(model, transcoders))
    # circuit-tracer wraps each MLP and the unembedding; our weights go inside the wrappers
    state = {
        re.sub(r"^(blocks\.\d+\.mlp)\.", r"\1.old_mlp.", k).replace("unembed.", "unembed.old_unembed."): v
        for k, v in model.state_dict().items()
    }
    missing, unexpected = replacement.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith("transcoders.") for k in missing):
        raise RuntimeError(f"Could not map the weights onto circuit-tracer's model: {unexpected or missing}.")
    replacement.set_tokenizer(model.tokenizer)
    return replacement


def attribute(replacement, tokens: Int[Tensor, " pos"], batch_size: int = 256):
    """circuit-tracer's attribution graph of ``tokens`` on ``replacement`` (:func:`to_circuit_tracer`), without its
    notices (a PyTorch note about backward hooks; a warning that a graph without a "scan" cannot be uploaded)."""
    from circuit_tracer.attribution.attribute import attribute as ct_attribute

    logger = logging.getLogger("circuit_tracer")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Full backward hook")
            return ct_attribute(tokens, replacement, batch_size=batch_size)
    finally:
        logger.setLevel(level)


@dataclass(frozen=True)
class Agreement:
    """How circuit-tracer's graph of a prompt compares with ours."""

    same_nodes: bool  # the same active features and the same logit targets
    activation_diff: float  # largest difference of the features' activations (nan where the nodes differ)
    edge_diff: float  # largest difference of any edge (nan where the nodes differ)
    largest_edge: float  # the largest |edge| of ours, the scale of edge_diff
    edges_close: bool  # every edge within torch.allclose's tolerance (atol 1e-4, rtol 1e-5) of ours
    activations_close: bool  # every activation within atol 1e-5, rtol 1e-5 of ours
    same_pruning: bool  # the same nodes and edges kept at the default thresholds
    replacement: float  # circuit-tracer's replacement score
    completeness: float  # circuit-tracer's completeness score
    ours: dict[str, float]  # our replacement and completeness scores

    def __str__(self) -> str:
        return (
            f"same nodes {self.same_nodes}; largest edge difference {self.edge_diff:.1e} (largest edge "
            f"{self.largest_edge:.2f}), largest activation difference {self.activation_diff:.1e}; same pruning "
            f"{self.same_pruning}; scores, circuit-tracer vs ours: replacement {self.replacement:.4f} vs "
            f"{self.ours['replacement']:.4f}, completeness {self.completeness:.4f} vs {self.ours['completeness']:.4f}"
        )


def compare(ours: AttributionGraph, theirs) -> Agreement:
    """Nodes, activations, edges, pruning and scores of circuit-tracer's graph ``theirs`` against ``ours``."""
    from circuit_tracer.graph import compute_graph_scores, prune_graph

    same_nodes = (
        torch.equal(theirs.active_features.cpu(), ours.features.cpu())
        and [t.vocab_idx for t in theirs.logit_targets] == ours.logit_tokens.tolist()
    )

    def difference(theirs_: Tensor, ours_: Tensor, atol: float) -> tuple[float, bool]:
        """The largest difference, and whether every value is within ``torch.allclose``'s tolerance."""
        if not same_nodes:
            return float("nan"), False
        a, b = theirs_.cpu(), ours_.cpu()
        return (a - b).abs().max().item(), torch.allclose(a, b, atol=atol)

    activation_diff, activations_close = difference(theirs.activation_values, ours.activations, 1e-5)
    edge_diff, edges_close = difference(theirs.adjacency_matrix, ours.adjacency, 1e-4)
    mine, pruned = prune(ours), prune_graph(theirs)
    same_pruning = (
        same_nodes
        and torch.equal(pruned.node_mask.cpu(), mine.node_mask.cpu())
        and torch.equal(pruned.edge_mask.cpu(), mine.edge_mask.cpu())
    )
    replacement, completeness = compute_graph_scores(theirs)
    return Agreement(
        same_nodes,
        activation_diff,
        edge_diff,
        ours.adjacency.abs().max().item(),
        edges_close,
        activations_close,
        same_pruning,
        float(replacement),
        float(completeness),
        graph_scores(ours),
    )


def agrees(agreement: Agreement, score_tol: float = 1e-5) -> bool:
    """The same nodes, every edge and activation close (``torch.allclose``, as :class:`Agreement` records), the same
    pruning, and scores within ``score_tol``."""
    return (
        agreement.same_nodes
        and agreement.edges_close
        and agreement.activations_close
        and agreement.same_pruning
        and math.isclose(agreement.replacement, agreement.ours["replacement"], abs_tol=score_tol)
        and math.isclose(agreement.completeness, agreement.ours["completeness"], abs_tol=score_tol)
    )
