"""Fixtures shared by the unit tests."""

import os

import pytest
from transformer_lens import HookedTransformer

# The shared models live on the CPU, or on INTERP_DEVICE where it is set (the GPU check: INTERP_DEVICE=cuda pytest)
DEVICE = os.environ.get("INTERP_DEVICE") or "cpu"


def build_induction_model() -> HookedTransformer:
    """A 2-layer attention-only model whose weights are set by hand so that head 0.0 is a previous-token
    head, head 1.0 an induction head whose OV circuit copies tokens, and head 1.1 does nothing
    (:func:`interp_utils.circuits.reference_circuits.handset_model` without its distractor heads).

    Residual stream slots: [token one-hot | previous token (written by 0.0) | output (written by 1.0) | position].
    """
    from interp_utils.circuits.reference_circuits import handset_model

    return handset_model(distractors=False, device=DEVICE)


@pytest.fixture(scope="session")
def induction_model() -> HookedTransformer:
    return build_induction_model()


@pytest.fixture
def fresh_induction_model() -> HookedTransformer:
    """The same hand-built model, new for each test, for tests that change its weights."""
    return build_induction_model()


@pytest.fixture(scope="session")
def bundled_model() -> HookedTransformer:
    from interp_utils import load_bundled

    return load_bundled(device=DEVICE)


HANDSET_HALF = 12  # the hand-set case's sequences: a random half, then the same half again


@pytest.fixture(scope="session")
def handset():
    """Notebook 06's hand-set case on the CPU: the model with distractor heads, its edge graph, repeated sequences and
    their corruptions, the edges of the circuit set by hand, and the metric (the next token's logit)."""
    from interp_utils import reference_circuits as rc
    from interp_utils.circuits.edge_graph import EdgeGraph

    model = rc.handset_model(device="cpu")
    graph = EdgeGraph.of(model)
    tokens, corrupt = rc.repeated_pairs(6, HANDSET_HALF, seed=0)
    truth = graph.as_edges(rc.edge_mask(graph, rc.HANDSET_CIRCUIT))
    return model, graph, tokens, corrupt, truth, rc.next_token_logit(tokens, HANDSET_HALF)
