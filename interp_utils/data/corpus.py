"""The generated corpus and word-level tokenizer of the bundled model.

Documents of four kinds, packed into fixed-length sequences separated by ``<|endoftext|>``:
IOI stories from the paper's templates (or, for issue 35's ``own_templates`` attempts, from :data:`STORY_TEMPLATES`),
simple English-like sentences, random token spans that
repeat (at random lengths and offsets), and sentences that repeat. Some names and templates are
kept out of the IOI stories so the model's IOI behaviour can be measured on held-out ones.
"""

from __future__ import annotations

import random
import re

import torch
from jaxtyping import Int
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

# the IOI stories: the paper's templates, names and nouns, less a held-out split (re-exported here as
# corpus.HELD_OUT_NAMES and corpus.HELD_OUT_TEMPLATES: what the corpus holds out)
from interp_utils.data.ioi import (  # noqa: F401
    BABA_TEMPLATES,
    HELD_OUT_NAMES,
    HELD_OUT_TEMPLATES,
    NAMES,
    NOUNS,
    OBJECTS,
    PLACES,
    TRAIN_NAMES,
    TRAIN_TEMPLATES,
    IOIPrompt,
    Order,
    make_ioi_prompts,
    render,
)

EOT = "<|endoftext|>"
UNK = "[UNK]"

# Share of each kind of document (see `document`); the model card is written from these numbers.
MIX: dict[str, float] = {"ioi": 0.30, "plain": 0.20, "random_repeat": 0.30, "sentence_repeat": 0.20}

ADJECTIVES = "big small red old new happy quiet busy warm cold".split()
ROLE_NOUNS = NOUNS + OBJECTS
ROLE_NOUN_SHARE = 1 / 3
OPENERS = ["Then,", "After the lunch,", "Afterwards,", "Later,", "In the morning,", "Yesterday,"]
PREDICATES = [
    "went to the [PLACE].",
    "was working at the [PLACE].",
    "was commuting to the [PLACE].",
    "had a lot of fun at the [PLACE].",
    "was thinking about going to the [PLACE].",
    "found a [OBJECT] at the [PLACE].",
    "got a [OBJECT] at the [PLACE].",
    "wanted to give the [OBJECT] to the [NOUN].",
    "decided to give it to the [NOUN].",
    "had a long argument with the [NOUN].",
    "said that the [OBJECT] was [ADJ].",
    "liked the [ADJ] [OBJECT].",
    "saw a [ADJ] [NOUN] near the [PLACE].",
    "gave a [OBJECT] to the [NOUN].",
    # names as objects, so that every name (held-out ones too) is something the model can predict
    "gave a [OBJECT] to [NAME].",
    "said hello to [NAME].",
    "talked to [NAME] about the [PLACE].",
]
SUBJECTS = ["[NAME]", "The [NOUN]", "The [ADJ] [NOUN]", "Friends of [NAME]", "[NAME] and [NAME]"]
# IOI-like stories in templates of our own (BABA order; every word already in the vocabulary), none of the paper's and
# none within two words of one (tested): issue 35's held-out-template lever trains on these alone, so that all 15 of
# the paper's templates are held out, as they were for GPT-2.
STORY_TEMPLATES: list[str] = [
    "Later, [B] and [A] were at the [PLACE] with a [OBJECT], and [B] talked to",
    "Yesterday, [B] and [A] were at the [PLACE]. [B] said hello to",
    "In the morning, [B] and [A] went to the [PLACE], and [B] talked to",
    "[B] and [A] had a long argument at the [PLACE]. Later, [B] said to",
    "When [B] and [A] were at the [PLACE], [B] had a long argument with",
    "After the lunch, [B] and [A] saw a [OBJECT] near the [PLACE], and [B] said to",
    "[B] and [A] were thinking about the [OBJECT]. Afterwards [B] gave it to",
    "Then, [B] and [A] liked the [OBJECT] at the [PLACE]. [B] decided to give it to",
    "Later, [B] and [A] were commuting to the [PLACE], and [B] talked to",
    "In the morning, [B] and [A] got a [OBJECT]. [B] wanted to give it to",
    "When [B] and [A] had a lot of fun at the [PLACE], [B] said hello to",
    "Yesterday, [B] and [A] were busy at the [PLACE]. Later, [B] gave the [OBJECT] to",
    "[B] and [A] talked about the [PLACE]. Then, [B] said to",
    "After [B] and [A] had a long argument, [B] said hello to",
    "Friends of [B] and [A] liked the [PLACE]. Then, [B] talked to",
    "The [PLACE] had a [OBJECT]. [B] and [A] found it, and [B] gave it to",
    "Afterwards, [B] and [A] went to the [PLACE], and [B] decided to give the [OBJECT] to",
    "While [B] and [A] were thinking about going to the [PLACE], [B] said to",
    "Yesterday, [B] and [A] saw a [OBJECT] at the [PLACE]. [B] wanted to give it to",
    "Later, [B] and [A] got a [OBJECT] near the [PLACE]. Then, [B] gave it to",
    "In the morning, [B] and [A] were working at the [PLACE]. [B] talked to",
    "After [B] and [A] were commuting to the [PLACE], [B] said hello to",
    "Yesterday, [B] and [A] had a lot of fun. Afterwards [B] wanted to give the [OBJECT] to",
]
_SLOTS = {"[NOUN]": NOUNS, "[ADJ]": ADJECTIVES, "[PLACE]": PLACES, "[OBJECT]": OBJECTS}
_WORD = re.compile(r"\w+|[^\w\s]")


def words(text: str) -> list[str]:
    """Split text into the tokenizer's words (runs of letters and single punctuation marks)."""
    return _WORD.findall(text)


def sentence(rng: random.Random) -> str:
    """One simple English-like sentence from a small grammar."""
    text = rng.choice(SUBJECTS) + " " + rng.choice(PREDICATES)
    if rng.random() < 0.3:
        text = rng.choice(OPENERS) + " " + (text[0].lower() + text[1:] if text.startswith("The") else text)
    # names within a sentence are distinct: a repeated name would contradict the IOI pattern
    for name in rng.sample(NAMES, text.count("[NAME]")):
        text = text.replace("[NAME]", name, 1)
    for slot, options in _SLOTS.items():
        while slot in text:
            text = text.replace(slot, rng.choice(options), 1)
    return text


_ONSETS = "b br d f g gr h j k kr l m n p r s st t v z".split()
_VOWELS = "a e i o u".split()
_CODAS = ["", "", "n", "r", "l", "s"]


def extra_names(n: int, seed: int = 0) -> list[str]:
    """``n`` made-up names of two or three syllables ("Brelo", "Zunmar"), none a word the corpus already has: the
    many-rare-names lever of issue 35's attempts (each is one more vocabulary entry, used only as an IOI role)."""
    if n < 0:
        raise ValueError(f"n must be 0 or more (got {n})")
    rng, taken = random.Random(seed), {w.lower() for w in all_words()}
    out: list[str] = []
    while len(out) < n:
        syllables = [rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in range(rng.choice((2, 3)))]
        name = "".join(syllables).capitalize()
        if name.lower() not in taken:
            taken.add(name.lower())
            out.append(name)
    return out


def story_prompt(t: int, order: Order, io: str, s: str, place: str, obj: str) -> IOIPrompt:
    """Template ``t`` of :data:`STORY_TEMPLATES` (not the paper's) as an IOI prompt: ``io`` the answer, ``s`` the
    repeated subject (its ``template`` field indexes STORY_TEMPLATES)."""
    if order not in ("BABA", "ABBA"):
        raise ValueError(f"Stories come in order 'BABA' or 'ABBA', got {order!r}.")
    return render(t, order, io, s, s, place, obj, STORY_TEMPLATES)


def story_prompts(n: int, names: list[str], seed: int = 0) -> list[IOIPrompt]:
    """``n`` prompts from :data:`STORY_TEMPLATES`, BABA and ABBA in turn, two distinct names from ``names`` each."""
    rng = random.Random(seed)
    orders: tuple[Order, Order] = ("BABA", "ABBA")
    prompts = []
    for i in range(n):
        t, (io, s) = rng.randrange(len(STORY_TEMPLATES)), rng.sample(names, 2)
        prompts.append(story_prompt(t, orders[i % 2], io, s, rng.choice(PLACES), rng.choice(OBJECTS)))
    return prompts


def story(rng: random.Random, roles: list[str], order: Order) -> str:
    """An IOI-like story from :data:`STORY_TEMPLATES`, ending with the indirect object and a full stop."""
    t, (io, s) = rng.randrange(len(STORY_TEMPLATES)), rng.sample(roles, 2)
    return story_prompt(t, order, io, s, rng.choice(PLACES), rng.choice(OBJECTS)).completion


def document(rng: random.Random, vocab: list[str], cast: list[str] = TRAIN_NAMES, own_templates: bool = False) -> str:
    """One training document, its kind drawn with the probabilities in :data:`MIX`; IOI stories name people from
    ``cast``, in the paper's training templates or (``own_templates``) in :data:`STORY_TEMPLATES` alone."""
    kind = rng.choices(list(MIX), weights=list(MIX.values()))[0]
    if kind == "ioi":  # an IOI story, sometimes after a plain sentence
        order: Order = rng.choice(("BABA", "ABBA"))
        # A third of the stories use nouns in the two roles: the rule "copy the entity that was not
        # repeated" is then not tied to particular names, which is what lets it reach held-out names.
        roles = ROLE_NOUNS if rng.random() < ROLE_NOUN_SHARE else cast
        if own_templates:
            text = story(rng, roles, order)
        else:
            (p,) = make_ioi_prompts(1, roles, TRAIN_TEMPLATES, (order,), seed=rng.getrandbits(32))
            text = p.completion
        return (sentence(rng) + " " if rng.random() < 0.3 else "") + text
    if kind == "plain":
        return " ".join(sentence(rng) for _ in range(rng.randint(1, 4)))
    if kind == "random_repeat":  # a random span repeated, after a random-length prefix
        prefix = rng.choices(vocab, k=rng.randint(0, 10))
        span = rng.choices(vocab, k=rng.randint(4, 30))
        return " ".join(prefix + span + span)
    repeated = " ".join(sentence(rng) for _ in range(rng.randint(1, 3)))
    return " ".join(sentence(rng) for _ in range(rng.randint(0, 2))) + " " + repeated + " " + repeated


def all_words() -> list[str]:
    """Every word the corpus can produce, sorted: the tokenizer's vocabulary (without specials)."""
    texts = BABA_TEMPLATES + PREDICATES + SUBJECTS + OPENERS + NOUNS + ADJECTIVES + PLACES + OBJECTS + NAMES
    vocab = {w for t in texts for w in words(t.replace("[", " ").replace("]", " "))}
    vocab -= {"NAME", "NOUN", "ADJ", "PLACE", "OBJECT", "A", "B"}
    return sorted(vocab | set(NAMES))


def build_tokenizer(n_extra_names: int = 0) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over :func:`all_words` (and ``n_extra_names`` of :func:`extra_names`);
    ``<|endoftext|>`` is BOS, EOS and padding."""
    vocab = {w: i for i, w in enumerate([EOT, UNK] + all_words() + extra_names(n_extra_names))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOT,
        eos_token=EOT,
        pad_token=EOT,
        unk_token=UNK,
        model_max_length=1024,
        # TransformerLens prepends BOS itself; these two keep it from re-loading the tokenizer by name.
        add_bos_token=True,
        name_or_path="interp-mini-gpt2",
    )


def tokenizer_batches(
    tokenizer: PreTrainedTokenizerBase,
    batch_size: int,
    n_ctx: int,
    seed: int = 0,
    n_extra_names: int = 0,
    own_templates: bool = False,
):
    """Endless batches of ``[batch_size, n_ctx]`` token ids from a tokenizer alone (no model yet, as when the bundled
    model is trained), each row documents packed after BOS. With a model, use ``activations.token_batches``.
    ``n_extra_names``: IOI stories also name people from :func:`extra_names` (the tokenizer must know them);
    ``own_templates``: IOI stories from :data:`STORY_TEMPLATES`, none from the paper's."""
    rng = random.Random(seed)
    extra = extra_names(n_extra_names)
    vocab, cast = all_words() + extra, TRAIN_NAMES + extra
    eot = tokenizer.convert_tokens_to_ids(EOT)
    while True:
        rows: list[list[int]] = []
        while len(rows) < batch_size:
            docs = [document(rng, vocab, cast, own_templates) for _ in range(n_ctx // 8)]
            row: list[int] = []
            for ids in tokenizer(docs, add_special_tokens=False)["input_ids"]:
                row += [eot] + ids
                if len(row) >= n_ctx:
                    break
            rows.append(row[:n_ctx])
        batch: Int[torch.Tensor, "batch pos"] = torch.tensor(rows)
        yield batch


def sample_text(n_docs: int = 5, seed: int = 0) -> list[str]:
    """A few documents, to look at what the bundled model was trained on."""
    rng = random.Random(seed)
    vocab = all_words()
    return [document(rng, vocab) for _ in range(n_docs)]
