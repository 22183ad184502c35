"""Text preprocessing as pure functions: normalisation, tokenizer, vocabulary, encoding, specs."""

import numpy as np
import pytest

from sparkdl_pipe.errors import DatasetError, UserInputError
from sparkdl_pipe.preprocess.spec import TextSpec, spec_from_dict
from sparkdl_pipe.preprocess.text import (
    EMPTY_TEXT,
    OOV_ID,
    PAD_ID,
    UNDECODABLE_TEXT,
    Vocabulary,
    decode_text,
    encode_texts,
    encode_tokens,
    normalize,
    text_to_tokens,
    tokenize,
)


def test_normalize_nfkc_case_quotes_controls_whitespace():
    spec = TextSpec()
    assert normalize("  Ｔｈｅ\u00a0ﬁlm’s\tGREAT\u200b!\n", spec) == "the film's great!"
    assert normalize("Straße", spec) == "strasse"  # casefold
    assert normalize("Café", TextSpec(lowercase=False)) == "Café"
    assert normalize("e\u0301", spec) == "é"  # composed by NFKC


def test_tokenizer_words_numbers_punctuation():
    assert tokenize("it's 2.5 hours... too long!! (1,000 $; 50%) mp3 o'brien") == [
        "it's", "2.5", "hours", "...", "too", "long", "!!", "(", "1,000", "$", ";", "50%", ")", "mp3", "o'brien"]
    assert tokenize("well-made, 10:30pm") == ["well", "-", "made", ",", "10:30", "pm"]
    assert tokenize("日本語 テキスト") == ["日本語", "テキスト"]
    assert tokenize("a_b") == ["a", "_", "b"]
    assert text_to_tokens("Don’t   STOP", TextSpec()) == ["don't", "stop"]


def test_decode_text_reasons():
    assert decode_text(b"\xef\xbb\xbfhello") == ("hello", None, None)  # BOM removed
    assert decode_text(b"bad \xff byte")[1] == UNDECODABLE_TEXT
    assert decode_text("replaced \ufffd char")[1] == UNDECODABLE_TEXT
    assert decode_text(" \n\t ")[1] == EMPTY_TEXT
    assert decode_text(None)[1] == EMPTY_TEXT
    assert decode_text(b"")[1] == EMPTY_TEXT


def test_vocabulary_top_k_min_count_ties_and_reserved_ids():
    counts = [("b", 3), ("a", 3), ("c", 9), ("d", 1), ("e", 2), ("<pad>", 50)]
    v = Vocabulary.from_counts(counts, max_tokens=3, min_count=2)
    assert v.tokens == ("c", "a", "b")  # count desc, ties by token; reserved names never tokens
    assert v.index() == {"c": 2, "a": 3, "b": 4} and v.size == 5
    assert Vocabulary.from_counts(reversed(counts), 3, 2) == v  # input order does not matter
    assert Vocabulary.from_counts(counts, 10, 2).tokens == ("c", "a", "b", "e")
    assert Vocabulary.from_dict(v.to_dict()) == v
    altered = {**v.to_dict(), "tokens": ["c", "b", "a"]}
    with pytest.raises(DatasetError, match="fingerprint"):
        Vocabulary.from_dict(altered)


def test_encode_pads_truncates_and_flags():
    index = {"good": 2, "film": 3}
    ids, cut = encode_tokens(["good", "film", "unknown"], index, 5)
    assert ids.dtype == np.int32 and ids.tolist() == [2, 3, OOV_ID, PAD_ID, PAD_ID] and not cut
    ids, cut = encode_tokens(["good"] * 7, index, 5)
    assert ids.tolist() == [2] * 5 and cut
    ids, cut = encode_tokens(["good"] * 5, index, 5)
    assert not cut
    x, flags = encode_texts(["Good film", "good " * 9], TextSpec(max_len=4), index)
    assert x.shape == (2, 4) and flags.tolist() == [False, True]


def test_text_spec_validation_fingerprint_and_round_trip():
    s = TextSpec(max_len=32, vocab_fingerprint="abc", vocab_len=100)
    assert spec_from_dict(s.to_dict()) == s and s.shape == (32,)
    assert s.fingerprint() != TextSpec(max_len=32, vocab_fingerprint="abd", vocab_len=100).fingerprint()
    assert s.fingerprint() != TextSpec(max_len=32, lowercase=False, vocab_fingerprint="abc",
                                       vocab_len=100).fingerprint()
    with pytest.raises(UserInputError, match="max-len"):
        TextSpec(max_len=0)
    with pytest.raises(UserInputError, match="normalization"):
        TextSpec(normalization="NFX")
    with pytest.raises(UserInputError, match="min-count"):
        TextSpec(min_count=0)
