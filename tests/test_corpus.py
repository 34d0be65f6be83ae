from interp_utils import corpus
from interp_utils.data.ioi import NAMES


def test_every_name_is_one_token_with_or_without_a_space():
    tok = corpus.build_tokenizer()
    for name in NAMES:
        assert len(tok.encode(name)) == 1 and tok.encode(" " + name) == tok.encode(name)


def test_batches_are_packed_documents_without_unknown_words():
    tok = corpus.build_tokenizer()
    batch = next(corpus.tokenizer_batches(tok, batch_size=8, n_ctx=64, seed=3))
    assert batch.shape == (8, 64)
    assert (batch[:, 0] == tok.bos_token_id).all()
    assert not (batch == tok.unk_token_id).any()


def test_held_out_names_and_templates_never_appear_in_ioi_stories():
    assert not set(corpus.HELD_OUT_NAMES) & set(corpus.TRAIN_NAMES)
    assert not set(corpus.HELD_OUT_TEMPLATES) & set(corpus.TRAIN_TEMPLATES)
    # held-out names still occur in plain sentences, so their embeddings are trained
    text = " ".join(corpus.sample_text(400, seed=4))
    assert sum(name in text for name in corpus.HELD_OUT_NAMES) > len(corpus.HELD_OUT_NAMES) // 2


def _words_from_first_b(template: str) -> list[str]:
    return corpus.words(template[template.index("[B]") :].replace("[", " ").replace("]", " "))


def _edit_distance(a: list[str], b: list[str]) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[:], i
        for j, y in enumerate(b, 1):
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (x != y))
    return row[-1]


def test_own_templates_hold_out_all_of_the_papers(monkeypatch):
    """Issue 35's --own-templates lever: IOI stories from corpus.STORY_TEMPLATES only, each at least three words from
    every paper template (whole, and from the first name on), in vocabulary, with the IO as the answer; the paper's
    templates are never used."""
    import random

    import pytest

    from interp_utils.data.ioi import BABA_TEMPLATES

    whole = [corpus.words(t.replace("[", " ").replace("]", " ")) for t in BABA_TEMPLATES]
    for template in corpus.STORY_TEMPLATES:
        own = corpus.words(template.replace("[", " ").replace("]", " "))
        assert min(_edit_distance(own, w) for w in whole) >= 3, template
        assert min(_edit_distance(_words_from_first_b(template), _words_from_first_b(p)) for p in BABA_TEMPLATES) >= 3
        assert set(own) <= set(corpus.all_words()) | {"A", "B", "PLACE", "OBJECT"}, template
    for t in range(len(corpus.STORY_TEMPLATES)):
        for order in ("BABA", "ABBA"):
            p = corpus.story_prompt(t, order, "Alice", "Bob", "store", "ring")
            names = [w for w in corpus.words(p.completion) if w in ("Alice", "Bob")]
            # S, IO (BABA) or IO, S (ABBA), then S again, then the answer IO
            assert names == (["Bob", "Alice", "Bob", "Alice"] if order == "BABA" else ["Alice", "Bob", "Bob", "Alice"])
    with pytest.raises(ValueError, match="BABA"):
        corpus.story_prompt(0, "ABC", "Alice", "Bob", "store", "ring")
    tok = corpus.build_tokenizer()
    batch = next(corpus.tokenizer_batches(tok, batch_size=8, n_ctx=128, seed=3, own_templates=True))
    assert not (batch == tok.unk_token_id).any()

    def paper_template(*args, **kwargs):
        raise AssertionError("a paper template was used")

    monkeypatch.setattr(corpus, "make_ioi_prompts", paper_template)
    rng = random.Random(0)
    docs = [corpus.document(rng, corpus.all_words(), own_templates=True) for _ in range(300)]
    assert sum(any(t.split("[B]")[-1].strip() in d for t in corpus.STORY_TEMPLATES) for d in docs) > 50
    with pytest.raises(AssertionError, match="paper template"):
        [corpus.document(rng, corpus.all_words()) for _ in range(300)]
