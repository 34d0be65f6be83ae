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
