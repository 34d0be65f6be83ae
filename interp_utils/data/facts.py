"""True and false statements about public facts (countries and their capitals, ``data/capitals.csv``, written for
this suite): a truth probe's data set for a model that knows geography, such as GPT-2 small. The bundled model's
vocabulary has none of these words. Also IOI statements whose false completion is a name mentioned once, as often as
the true one (:func:`mention_statements`), so that a lie detector cannot tell them apart by counting mentions."""

from __future__ import annotations

import csv
import random
from dataclasses import replace
from pathlib import Path

import torch
from jaxtyping import Bool, Int
from torch import Tensor
from transformer_lens import HookedTransformer

from interp_utils.data import ioi

CAPITALS = Path(__file__).resolve().parents[2] / "data" / "capitals.csv"


def capitals(path: Path = CAPITALS) -> list[tuple[str, str]]:
    """(country, capital) pairs, in the file's order."""
    with open(path, newline="") as f:
        return [(row["country"], row["capital"]) for row in csv.DictReader(f)]


def capital_statements(
    model: HookedTransformer, pairs: list[tuple[str, str]], seed: int = 0
) -> tuple[Int[Tensor, "statement pos"], Bool[Tensor, " statement"], Int[Tensor, " statement"]]:
    """For each country, "The capital of {country} is {capital}" (true) and the same with another country's capital
    (false). Returns the tokens ``[true ones; false ones]`` (right-padded), the labels and each statement's last
    position (where the probe reads, as for ``ioi.statements``)."""
    if len(pairs) < 2:
        raise ValueError(f"Need at least two (country, capital) pairs to make false statements, got {len(pairs)}.")
    rng = random.Random(seed)
    true = [f"The capital of {country} is {capital}" for country, capital in pairs]
    false = []
    for i, (country, _) in enumerate(pairs):
        j = rng.choice([k for k in range(len(pairs)) if k != i])
        false.append(f"The capital of {country} is {pairs[j][1]}")
    rows = [model.to_tokens(text)[0] for text in true + false]
    tokens = ioi.right_pad(rows, ioi.pad_id(model))
    labels = torch.cat([torch.ones(len(pairs), dtype=torch.bool), torch.zeros(len(pairs), dtype=torch.bool)])
    return tokens, labels, torch.tensor([len(r) - 1 for r in rows])


# --- IOI statements whose false completion is named as often as the true one ---

COMPLETIONS = ("io", "s", "third")  # the three completions of :func:`mention_statements`, in its order


def false_completions(n: int) -> Int[Tensor, " n"]:
    """Which completion makes each of ``n`` prompts' false statement (an index into :data:`COMPLETIONS`): the subject
    (named twice, one of the story's pair) for even prompts, the third name (named once, outside the pair) for odd
    ones. Then neither the count of earlier mentions nor membership of the pair tells true from false: a probe
    reading either alone is right on at most three statements in four."""
    return torch.arange(n) % 2 + 1


def third_name_prompts(
    prompts: list[ioi.IOIPrompt], cast: list[str], seed: int = 0
) -> tuple[list[ioi.IOIPrompt], list[str]]:
    """Each prompt after a sentence that names a third member of ``cast`` once ("Kate went to the school. Then, ..."):
    the third name is mentioned once, as often as the indirect object, and the story still implies the indirect
    object. Returns the new prompts and the third names."""
    rng = random.Random(seed)
    out, third = [], []
    for p in prompts:
        c = rng.choice([n for n in cast if n not in (p.io, p.s)])
        out.append(replace(p, text=f"{c} went to the {rng.choice(ioi.PLACES)}. {p.text}"))
        third.append(c)
    return out, third


def mention_statements(
    model: HookedTransformer, batch: ioi.IOIBatch, third: list[str], pad: int = 0
) -> tuple[Int[Tensor, "statement pos"], Int[Tensor, " statement"]]:
    """Each prompt of ``batch`` completed three times: with the indirect object (true; named once before), the
    subject (false; named twice) and the third name (false; named once), in that order (:data:`COMPLETIONS`).
    Returns the tokens ``[io ones; s ones; third ones]`` (right-padded with ``pad``) and the completing position."""
    if len(third) != len(batch):
        raise ValueError(f"Give one third name per prompt: {len(third)} names for {len(batch)} prompts.")
    c = torch.tensor([model.to_single_token(" " + name) for name in third], device=batch.tokens.device)
    n, width = batch.tokens.shape
    tokens = batch.tokens.new_full((3 * n, width + 1), pad)
    rows, at = torch.arange(n, device=tokens.device), batch.positions["end"].to(tokens.device) + 1
    for i, ids in enumerate((batch.io, batch.s, c)):
        tokens[i * n : (i + 1) * n, :width] = batch.tokens
        tokens[i * n + rows, at] = ids.to(tokens.device)
    return tokens, torch.cat([at, at, at])
