"""Feature dashboards, as circuit-tracer's and Neuronpedia's graphs show them: for each feature of a graph, the
contexts it fires on most (every token shaded by its activation, the top one marked) and the tokens its decoder
direction promotes and suppresses through the unembedding. As HTML for the notebook, and as a short summary that
the graph view shows when the pointer rests on a node."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Int
from torch import Tensor
from transformer_lens import HookedTransformer

from interp_utils.core import hooks
from interp_utils.dictionaries.sae import SAE
from interp_utils.dictionaries.sae_metrics import latent_activations, logit_effects, top_contexts


def _spaced(word: str) -> str:
    """A token as it reads in running text: word-level tokens (the bundled model's) get the space they lack."""
    return word if word.startswith((" ", "\n")) else " " + word


@dataclass
class Dashboard:
    """One feature: its top contexts (the window's tokens, their activations, where the top one is) and effects."""

    layer: int
    feature: int
    density: float  # the share of (non-BOS) tokens it fires on
    contexts: list[tuple[list[str], list[float], int]]
    promotes: list[tuple[str, float]]
    suppresses: list[tuple[str, float]]

    @property
    def label(self) -> str:
        """The distinct tokens of its top contexts, most active first: a quick name, e.g. "'Mary' / 'John'"."""
        seen: list[str] = []
        for words, _, at in self.contexts:
            word = words[at].strip() or words[at]
            if word not in seen:
                seen.append(word)
        return " / ".join(repr(w) for w in seen[:3]) or "(never fires)"

    def summary(self, n: int = 3) -> str:
        """A few lines for a plotly hover box: the top contexts with the top token in bold, the promoted tokens."""
        lines = [f"fires on {self.density:.2%} of tokens"]
        for words, _, at in self.contexts[:n]:
            text = "".join(
                f"<b>{html.escape(_spaced(w))}</b>" if i == at else html.escape(_spaced(w)) for i, w in enumerate(words)
            )
            lines.append("… " + text.replace("\n", " "))
        lines.append("promotes " + ", ".join(html.escape(repr(t)) for t, _ in self.promotes[:5]))
        return "<br>".join(lines)

    def html(self) -> str:
        """The dashboard as an HTML block: contexts shaded by activation, then the logit effects."""
        rows = []
        for words, values, at in self.contexts:
            top = max(max(values), 1e-9)
            spans = []
            for i, (w, v) in enumerate(zip(words, values, strict=True)):
                style = f"background:rgba(255,127,14,{max(v, 0) / top:.2f})" + (";font-weight:bold" if i == at else "")
                spans.append(f"<span style='{style}' title='{v:.2f}'>{html.escape(_spaced(w))}</span>")
            rows.append(
                f"<div style='font-family:monospace;white-space:pre'>{''.join(spans)}  ({values[at]:.2f})</div>"
            )
        effects = [
            f"<b>{kind}</b>: " + ", ".join(f"{html.escape(repr(t))} {v:+.2f}" for t, v in items)
            for kind, items in (("promotes", self.promotes), ("suppresses", self.suppresses))
        ]
        head = f"<b>L{self.layer} #{self.feature}</b>: {html.escape(self.label)}; fires on {self.density:.2%} of tokens"
        return f"<div style='margin:0.5em 0'>{head}{''.join(rows)}<div>{'<br>'.join(effects)}</div></div>"


@torch.no_grad()
def feature_dashboards(
    model: HookedTransformer,
    transcoders: dict[int, SAE],
    features: Sequence[tuple[int, int]],
    tokens: Int[Tensor, "batch pos"],
    k: int = 5,
    before: int = 8,
    after: int = 2,
) -> dict[tuple[int, int], Dashboard]:
    """A dashboard for each (layer, feature) in ``features``, from its activations on ``tokens`` (read at the
    layer's MLP input, as a transcoder reads) and its decoder row read through the unembedding."""
    bad = [(layer, f) for layer, f in features if layer not in transcoders or not 0 <= f < transcoders[layer].cfg.d_sae]
    if bad:
        raise ValueError(f"No such (layer, feature): {bad[:3]}; layers {sorted(transcoders)} have features 0..d_sae-1.")
    out = {}
    for layer in sorted({layer for layer, _ in features}):
        acts = latent_activations(model, transcoders[layer], hooks.name("ln2_normalized", layer), tokens)
        for lay, feat in features:
            if lay != layer:
                continue
            a = acts[..., feat]
            contexts = []
            for row, pos, window, value in top_contexts(a, k=k, before=before, after=after):
                if value <= 0:
                    break
                words = [model.to_single_str_token(int(t)) for t in tokens[row, window]]
                contexts.append((words, a[row, window].tolist(), pos - window.start))
            effects = logit_effects(model, transcoders[layer], feat, k=8)
            density = (a[:, 1:] > 0).float().mean().item()
            out[(lay, feat)] = Dashboard(lay, feat, density, contexts, effects["promotes"], effects["suppresses"])
    return out
