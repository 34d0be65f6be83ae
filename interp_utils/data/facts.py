"""True and false statements about public facts (countries and their capitals, ``data/capitals.csv``, written for
this suite): a truth probe's data set for a model that knows geography, such as GPT-2 small. The bundled model's
vocabulary has none of these words."""

from __future__ import annotations

import csv
import random
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
