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


def test_own_templates_hold_out_all_of_the_papers(monkeypatch):
    """Issue 35's --own-templates lever: IOI stories from corpus.STORY_TEMPLATES only, in vocabulary, with the IO as
    the answer; the paper's templates are never used."""
    import random

    import pytest

    from interp_utils.data.ioi import BABA_TEMPLATES

    assert not set(corpus.STORY_TEMPLATES) & set(BABA_TEMPLATES)
    vocab = set(corpus.all_words()) | {"A", "B", "PLACE", "OBJECT"}
    assert all(set(corpus.words(t.replace("[", " ").replace("]", " "))) <= vocab for t in corpus.STORY_TEMPLATES)
    rng = random.Random(0)
    for order in ("BABA", "ABBA"):
        words = corpus.words(corpus.story(rng, ["Alice", "Bob", "Carol"], order))
        answer, names = words[-2], [w for w in words[:-2] if w in ("Alice", "Bob", "Carol")]
        assert len(names) == 3 and names.count(answer) == 1 and names.index(answer) == (1 if order == "BABA" else 0)
    tok = corpus.build_tokenizer()
    batch = next(corpus.tokenizer_batches(tok, batch_size=8, n_ctx=128, seed=3, own_templates=True))
    assert not (batch == tok.unk_token_id).any()

    def paper_template(*args, **kwargs):
        raise AssertionError("a paper template was used")

    monkeypatch.setattr(corpus, "make_ioi_prompts", paper_template)
    docs = [corpus.document(rng, corpus.all_words(), own_templates=True) for _ in range(300)]
    assert sum(any(t.split("[B]")[-1].strip() in d for t in corpus.STORY_TEMPLATES) for d in docs) > 50
    with pytest.raises(AssertionError, match="paper template"):
        [corpus.document(rng, corpus.all_words()) for _ in range(300)]
