"""Indirect-object-identification prompts built from the templates of Wang et al. (2022).

A BABA prompt reads "Then, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to" and the
indirect object (IO) is [A]; ABBA swaps the first two names. The ABC distribution replaces the
names with three different ones, which removes the IO signal (the paper's corruption).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer

from interp_utils.core.metrics import normalised_metric

# The paper's BABA templates (github.com/redwoodresearch/Easy-Transformer, ioi_dataset.py).
BABA_TEMPLATES: list[str] = [
    "Then, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to",
    "Then, [B] and [A] had a lot of fun at the [PLACE]. [B] gave a [OBJECT] to",
    "Then, [B] and [A] were working at the [PLACE]. [B] decided to give a [OBJECT] to",
    "Then, [B] and [A] were thinking about going to the [PLACE]. [B] wanted to give a [OBJECT] to",
    "Then, [B] and [A] had a long argument, and afterwards [B] said to",
    "After [B] and [A] went to the [PLACE], [B] gave a [OBJECT] to",
    "When [B] and [A] got a [OBJECT] at the [PLACE], [B] decided to give it to",
    "When [B] and [A] got a [OBJECT] at the [PLACE], [B] decided to give the [OBJECT] to",
    "While [B] and [A] were working at the [PLACE], [B] gave a [OBJECT] to",
    "While [B] and [A] were commuting to the [PLACE], [B] gave a [OBJECT] to",
    "After the lunch, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to",
    "Afterwards, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to",
    "Then, [B] and [A] had a long argument. Afterwards [B] said to",
    "The [PLACE] [B] and [A] went to had a [OBJECT]. [B] gave it to",
    "Friends [B] and [A] found a [OBJECT] at the [PLACE]. [B] gave it to",
]

PLACES: list[str] = ["store", "garden", "restaurant", "school", "hospital", "office", "house", "station"]
OBJECTS: list[str] = ["ring", "kiss", "bone", "basketball", "computer", "necklace", "drink", "snack"]

# First names in the style of the paper's list; for GPT-2 filter them with `single_token_names`.
NAMES: list[str] = """
Aaron Adam Alan Alex Alice Amy Anderson Andre Andrew Andy Anna Anthony Arthur Austin Blake
Brandon Brian Carter Charles Charlie Christian Christopher Clark Cole Collins Connor Crew
Crystal Daniel David Dean Edward Elizabeth Emily Eric Eva Ford Frank George Georgia Graham
Grant Henry Ian Jack Jacob Jake James Jamie Jane Jason Jay Jennifer Jeremy Jessica John
Jonathan Jordan Joseph Joshua Justin Kate Kelly Kevin Kyle Laura Leon Lewis Lisa Louis Luke
Madison Marco Marcus Maria Mark Martin Mary Matthew Max Michael Michelle Morgan Patrick Paul
Peter Prince Rachel Richard River Robert Roman Rose Ruby Russell Ryan Sarah Scott Sean Simon
Stephen Steven Sullivan Taylor Thomas Tyler Victoria Warren William
""".split()


# The bundled model's split: IOI evaluation uses names and templates that never occur in the corpus's IOI stories.
HELD_OUT_TEMPLATES: list[int] = [3, 9, 14]
TRAIN_TEMPLATES: list[int] = [t for t in range(len(BABA_TEMPLATES)) if t not in HELD_OUT_TEMPLATES]
HELD_OUT_NAMES: list[str] = NAMES[::5]
TRAIN_NAMES: list[str] = [n for n in NAMES if n not in HELD_OUT_NAMES]
# Nouns for people and animals: the bundled corpus puts them in the two roles of a third of its IOI stories.
NOUNS = "dog cat teacher doctor farmer child bird man woman friend neighbour driver".split()

Order = Literal["BABA", "ABBA", "ABC"]


@dataclass(frozen=True)
class IOIPrompt:
    """One prompt: ``text`` ends just before the answer; ``io`` and ``s`` are the two names."""

    text: str
    io: str
    s: str
    template: int
    order: Order
    place: str
    obj: str

    @property
    def completion(self) -> str:
        """The full sentence, with the indirect object and a full stop."""
        return f"{self.text} {self.io}."


def abba_template(template: str) -> str:
    """Swap the first two names of a BABA template, giving its ABBA twin."""
    first_b, first_a = template.index("[B]"), template.index("[A]")
    if not first_b < first_a:
        raise ValueError(f"Not a BABA template (B must come before A): {template!r}")
    return template[:first_b] + "[A]" + template[first_b + 3 : first_a] + "[B]" + template[first_a + 3 :]


def render(
    t: int, order: Order, a: str, b: str, c: str, place: str, obj: str, templates: list[str] = BABA_TEMPLATES
) -> IOIPrompt:
    """Fill template ``t`` of ``templates`` (BABA form; the paper's by default) with IO ``a`` and subject ``b``; for
    order "ABC" the subject's second mention is the third name ``c``."""
    template = templates[t] if order == "BABA" else abba_template(templates[t])
    head, tail = template.rsplit("[B]", 1)

    def sub(part: str) -> str:
        return part.replace("[A]", a).replace("[B]", b).replace("[PLACE]", place).replace("[OBJECT]", obj)

    text = sub(head) + (c if order == "ABC" else b) + sub(tail)
    return IOIPrompt(text=text, io=a, s=b, template=t, order=order, place=place, obj=obj)


def make_ioi_prompts(
    n: int,
    names: list[str] | None = None,
    templates: list[int] | None = None,
    orders: tuple[Order, ...] = ("BABA", "ABBA"),
    seed: int = 0,
) -> list[IOIPrompt]:
    """``n`` prompts with distinct names drawn from ``names``, cycling through ``orders``.

    ``templates`` are indices into :data:`BABA_TEMPLATES` (all by default). With order "ABC" the
    subject's second mention is a third name, so no name is repeated (the corrupted distribution).
    """
    names = NAMES if names is None else names
    templates = list(range(len(BABA_TEMPLATES))) if templates is None else templates
    if len(set(names)) < 3:
        raise ValueError(f"Need at least 3 distinct names, got {len(set(names))}.")
    if not templates or any(not 0 <= t < len(BABA_TEMPLATES) for t in templates):
        raise ValueError(f"Template indices must be in 0..{len(BABA_TEMPLATES) - 1}, got {templates}.")
    bad = set(orders) - {"BABA", "ABBA", "ABC"}
    if bad or not orders:
        raise ValueError(f"Unknown orders {sorted(bad)}; use 'BABA', 'ABBA' or 'ABC'.")
    rng = random.Random(seed)
    prompts = []
    for i in range(n):
        t = rng.choice(templates)
        a, b, c = rng.sample(names, 3)
        prompts.append(render(t, orders[i % len(orders)], a, b, c, rng.choice(PLACES), rng.choice(OBJECTS)))
    return prompts


def corrupt_abc(prompts: list[IOIPrompt], names: list[str] | None = None, seed: int = 1) -> list[IOIPrompt]:
    """The ABC twin of each prompt: same template, place and object, three fresh distinct names."""
    names = NAMES if names is None else names
    rng = random.Random(seed)
    out = []
    for p in prompts:
        a, b, c = rng.sample(names, 3)
        out.append(render(p.template, "ABC", a, b, c, p.place, p.obj))
    return out


POSITIONS = ("IO", "S1", "S1+1", "S2", "end")  # the token positions the paper's analysis refers to


def single_token_names(model: HookedTransformer, names: list[str] | None = None) -> list[str]:
    """The names that ``model``'s tokenizer writes as one token after a space (as they appear in prompts)."""
    names = NAMES if names is None else names
    unknown = getattr(model.tokenizer, "unk_token_id", None)
    out = []
    for name in names:
        ids = model.to_tokens(" " + name, prepend_bos=False)[0].tolist()
        if len(ids) == 1 and ids[0] != unknown:
            out.append(name)
    return out


def default_names(model: HookedTransformer) -> list[str]:
    """The names a notebook uses for ``model``: for the bundled model, single-token names it never saw in an IOI
    story (:data:`HELD_OUT_NAMES`); for any other model, the single-token names of :data:`NAMES`."""
    from interp_utils.core.loading import is_bundled

    return single_token_names(model, HELD_OUT_NAMES if is_bundled(model) else NAMES)


def default_nouns(model: HookedTransformer) -> list[str]:
    """Nouns for people and animals that ``model`` writes as one token (the bundled corpus's IOI stories put them in
    the two roles a third of the time): the cast of the noun-role stories."""
    return single_token_names(model, NOUNS)


def default_templates(model: HookedTransformer) -> list[int]:
    """The templates a notebook uses for ``model``: the bundled model's training templates, or all of the paper's."""
    from interp_utils.core.loading import is_bundled

    return list(TRAIN_TEMPLATES) if is_bundled(model) else list(range(len(BABA_TEMPLATES)))


def default_prompts(model: HookedTransformer, n: int, seed: int = 0) -> list[IOIPrompt]:
    """``n`` BABA / ABBA prompts from :func:`default_names` and :func:`default_templates`."""
    return make_ioi_prompts(n, default_names(model), default_templates(model), seed=seed)


@dataclass
class IOIBatch:
    """Prompts tokenised for ``model``, with the positions of the names and the answer tokens."""

    prompts: list[IOIPrompt]
    tokens: Int[Tensor, "batch pos"]  # right-padded, BOS first
    corrupted: Int[Tensor, "batch pos"]  # the ABC twins, same positions
    io: Int[Tensor, " batch"]
    s: Int[Tensor, " batch"]
    positions: dict[str, Int[Tensor, " batch"]]  # each of POSITIONS, per prompt

    def __len__(self) -> int:
        return len(self.prompts)


def ioi_batch(
    model: HookedTransformer, prompts: list[IOIPrompt], corrupted: list[IOIPrompt] | None = None, seed: int = 1
) -> IOIBatch:
    """Tokenise ``prompts`` and their ABC twins (made with :func:`corrupt_abc` unless given).

    Every name must be a single token for ``model`` (use :func:`single_token_names` to choose names),
    and each twin must tokenise to the same length, so that positions line up.
    """
    if not prompts:
        raise ValueError("No prompts given.")
    names = sorted({p.io for p in prompts} | {p.s for p in prompts})
    multi = sorted(set(names) - set(single_token_names(model, names)))
    if multi:
        raise ValueError(
            f"These names are not single tokens for {model.cfg.model_name}: {multi[:10]}. "
            "Build prompts from ioi.single_token_names(model)."
        )
    corrupted = corrupt_abc(prompts, single_token_names(model), seed=seed) if corrupted is None else corrupted
    if len(corrupted) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(corrupted)} corrupted prompts.")
    clean_rows = [model.to_tokens(p.text)[0] for p in prompts]
    corrupt_rows = [model.to_tokens(p.text)[0] for p in corrupted]
    positions: dict[str, list[int]] = {k: [] for k in POSITIONS}
    io_ids, s_ids = [], []
    for p, row, twin in zip(prompts, clean_rows, corrupt_rows, strict=True):
        if len(row) != len(twin):
            raise ValueError(f"Prompt and its corrupted twin tokenise to different lengths: {p.text!r}.")
        io_id, s_id = model.to_single_token(" " + p.io), model.to_single_token(" " + p.s)
        io_ids.append(io_id)
        s_ids.append(s_id)
        s_at = (row == s_id).nonzero().flatten().tolist()
        io_at = (row == io_id).nonzero().flatten().tolist()
        if len(s_at) != 2 or len(io_at) != 1:
            raise ValueError(f"Expected S twice and IO once in {p.text!r}; found S at {s_at}, IO at {io_at}.")
        for key, value in zip(POSITIONS, (io_at[0], s_at[0], s_at[0] + 1, s_at[1], len(row) - 1), strict=True):
            positions[key].append(value)
    pad = pad_id(model)

    def stack(rows: list[Tensor]) -> Tensor:
        return right_pad(rows, pad).to(model.cfg.device)

    return IOIBatch(
        prompts=list(prompts),
        tokens=stack(clean_rows),
        corrupted=stack(corrupt_rows),
        io=torch.tensor(io_ids, device=model.cfg.device),
        s=torch.tensor(s_ids, device=model.cfg.device),
        positions={k: torch.tensor(v, device=model.cfg.device) for k, v in positions.items()},
    )


def pad_id(model: HookedTransformer) -> int:
    """The token that right-pads a batch for ``model``: its tokenizer's padding token, else 0."""
    tokenizer = model.tokenizer
    return tokenizer.pad_token_id if tokenizer is not None and tokenizer.pad_token_id is not None else 0


def right_pad(rows: list[Tensor], pad: int) -> Int[Tensor, "row pos"]:
    """Token rows of different lengths stacked into one tensor, each right-padded with ``pad``."""
    width = max(len(r) for r in rows)
    return torch.stack([torch.cat([r, r.new_full((width - len(r),), pad)]) for r in rows])


def statements(
    batch: IOIBatch, pad: int = 0
) -> tuple[Int[Tensor, "pair pos"], Bool[Tensor, " pair"], Int[Tensor, " pair"]]:
    """Each prompt completed twice, as statements a probe can call true or false: with its indirect object (what the
    story implies) and with its subject. Returns the tokens ``[true ones; false ones]`` (right-padded with ``pad``),
    the labels (True: completed with IO) and the position of the completing name."""
    n, width = batch.tokens.shape
    tokens = batch.tokens.new_full((2 * n, width + 1), pad)
    tokens[:n, :width] = tokens[n:, :width] = batch.tokens
    rows, at = torch.arange(n, device=tokens.device), batch.positions["end"].to(tokens.device) + 1
    tokens[rows, at], tokens[n + rows, at] = batch.io.to(tokens.device), batch.s.to(tokens.device)
    labels = torch.cat([torch.ones(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool)])
    return tokens, labels, torch.cat([at, at])


# --- the behaviour: the IO - S logit difference ---


def _io_minus_s(final: Float[Tensor, "batch vocab"], io: Tensor, s: Tensor) -> Float[Tensor, " batch"]:
    """The IO logit minus the S logit of each row."""
    io, s = io.to(final.device), s.to(final.device)
    return final.gather(1, io[:, None])[:, 0] - final.gather(1, s[:, None])[:, 0]


def logit_diff(logits: Float[Tensor, "batch pos vocab"], batch: IOIBatch) -> Float[Tensor, " batch"]:
    """IO logit minus S logit at each prompt's last token, for a tokenised IOI batch."""
    rows = torch.arange(len(batch), device=logits.device)
    return _io_minus_s(logits[rows, batch.positions["end"].to(logits.device)], batch.io, batch.s)


@torch.inference_mode()
def prompt_logit_diffs(model: HookedTransformer, prompts: list[IOIPrompt]) -> Float[Tensor, " prompt"]:
    """:func:`logit_diff` straight from prompts (any lengths, no corrupted twins needed), one value per prompt."""
    if not prompts:
        raise ValueError("No prompts given.")
    tokens = model.to_tokens([p.text for p in prompts], padding_side="right")
    lengths = torch.tensor([model.to_tokens(p.text).shape[1] for p in prompts], device=tokens.device)
    io = torch.tensor([model.to_single_token(" " + p.io) for p in prompts], device=tokens.device)
    s = torch.tensor([model.to_single_token(" " + p.s) for p in prompts], device=tokens.device)
    return _io_minus_s(model(tokens)[torch.arange(len(prompts)), lengths - 1], io, s).cpu()


def normalised_logit_diff(
    logits: Float[Tensor, "batch pos vocab"], batch: IOIBatch, clean: float, corrupt: float
) -> Float[Tensor, " batch"]:
    """The paper's normalised scale: 1 at the clean mean logit difference ``clean``, 0 at the corrupted ``corrupt``."""
    return normalised_metric(logit_diff(logits, batch), clean, corrupt)
