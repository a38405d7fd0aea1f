"""Metric functions in bench/ai_metrics.py and the invariants of the evaluation set in bench/ai_eval/.

No database and no Django: run with `-p no:django`.
"""

import json
import re
import unicodedata
import wave
from collections import Counter
from pathlib import Path

import pytest

from bench.ai_metrics import (
    accuracy_per_label,
    agreement,
    confusion,
    corpus_wer,
    format_table,
    macro_f1,
    normalize_words,
    percentile,
    word_edits,
    word_error_rate,
)

EVAL_DIR = Path(__file__).resolve().parents[2] / "bench" / "ai_eval"
INTENTS = {"note", "request", "task", "question", "complaint", "greeting", "other"}
SENTIMENTS = {"positive", "neutral", "negative"}
MAIN_LANGUAGES = {"en", "es", "pt", "de"}

# Four items: a->a (right), a->b (wrong), b->b (right), c->a (wrong).
EXPECTED = ["a", "a", "b", "c"]
PREDICTED = ["a", "b", "b", "a"]


def load_jsonl(name):
    lines = (EVAL_DIR / name).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


# --- classification metrics ---------------------------------------------------------------------


def test_accuracy_per_label_is_recall_per_expected_label():
    assert accuracy_per_label(EXPECTED, PREDICTED) == {"a": 0.5, "b": 1.0, "c": 0.0}


def test_accuracy_per_label_ignores_labels_only_predicted():
    assert accuracy_per_label(["a", "a"], ["z", "a"]) == {"a": 0.5}


def test_accuracy_per_label_rejects_lists_of_different_length():
    with pytest.raises(ValueError):
        accuracy_per_label(["a"], ["a", "b"])


def test_macro_f1_hand_computed():
    # a: tp 1, fp 1 (c->a), fn 1 (a->b): P 1/2, R 1/2, F1 1/2
    # b: tp 1, fp 1 (a->b), fn 0:         P 1/2, R 1,   F1 2/3
    # c: tp 0, fp 0, fn 1:                P 0 (0/0), R 0, F1 0
    assert macro_f1(EXPECTED, PREDICTED) == pytest.approx((1 / 2 + 2 / 3 + 0) / 3)


def test_macro_f1_skips_labels_with_no_support_and_no_prediction():
    assert macro_f1(EXPECTED, PREDICTED, labels=["a", "b", "c", "d"]) == pytest.approx(7 / 18)
    assert macro_f1(EXPECTED, PREDICTED, labels=["a"]) == pytest.approx(0.5)
    assert macro_f1(EXPECTED, PREDICTED, labels=["d"]) == 0.0


def test_macro_f1_counts_a_label_only_predicted_as_zero():
    # a: P 1, R 1/2, F1 2/3; z: predicted once, never expected: P 0, R 0/0 = 0, F1 0
    assert macro_f1(["a", "a"], ["a", "z"]) == pytest.approx((2 / 3 + 0) / 2)


def test_macro_f1_perfect_and_empty():
    assert macro_f1(["x", "y", "y"], ["x", "y", "y"]) == 1.0
    with pytest.raises(ValueError):
        macro_f1([], [])


def test_agreement():
    assert agreement(EXPECTED, PREDICTED) == 0.5
    assert agreement(["a"], ["a"]) == 1.0
    with pytest.raises(ValueError):
        agreement([], [])
    with pytest.raises(ValueError):
        agreement(["a"], [])


def test_confusion_counts_pairs():
    assert confusion(EXPECTED, PREDICTED) == {("a", "a"): 1, ("a", "b"): 1, ("b", "b"): 1, ("c", "a"): 1}
    assert confusion(["x", "x", "x"], ["y", "y", "x"]) == {("x", "x"): 1, ("x", "y"): 2}
    assert confusion([], []) == {}


# --- transcription metrics -----------------------------------------------------------------------


def test_normalize_words():
    assert normalize_words("Hi, I'd like TWO boxes!") == ["hi", "id", "like", "two", "boxes"]
    assert normalize_words("sexta-feira") == ["sexta", "feira"]
    assert normalize_words("¿Dónde está?") == ["dónde", "está"]
    assert normalize_words("Straße") == ["strasse"]
    assert normalize_words("89,90 €") == ["89", "90", "€"]
    assert normalize_words("  ...  ") == []


def test_wer_identical_and_hand_computed_edits():
    assert word_error_rate("the cat sat", "the cat sat") == 0.0
    # one substitution (sat -> sit) and one deletion (the) over 6 reference words
    assert word_error_rate("the cat sat on the mat", "the cat sit on mat") == pytest.approx(2 / 6)
    # one insertion over 1 reference word
    assert word_error_rate("hello", "hello there") == 1.0
    # everything deleted
    assert word_error_rate("one two three", "") == 1.0
    # more insertions than reference words
    assert word_error_rate("hi", "oh hi there you") == 3.0
    assert word_edits("a b c", "a x c d") == (2, 3)


def test_wer_ignores_case_and_punctuation_but_not_accents():
    assert word_error_rate("Hello, World!", "hello world") == 0.0
    assert word_error_rate("¿Dónde está?", "dónde está") == 0.0
    assert word_error_rate("¿Dónde está?", "donde esta") == 1.0
    assert word_error_rate("Não sei.", "nao sei") == 0.5


def test_wer_treats_composed_and_decomposed_accents_alike():
    composed = unicodedata.normalize("NFC", "não")
    decomposed = unicodedata.normalize("NFD", "não")
    assert composed != decomposed
    assert word_error_rate(composed, decomposed) == 0.0


def test_wer_with_empty_reference():
    assert word_error_rate("", "") == 0.0
    assert word_error_rate("", "two words") == 2.0


def test_corpus_wer_weighs_by_reference_length():
    pairs = [("a b c d", "a b c d"), ("x y", "x")]
    assert corpus_wer(pairs) == pytest.approx(1 / 6)  # a mean of per-pair WER would say 0.25
    assert corpus_wer(iter(pairs)) == pytest.approx(1 / 6)
    assert corpus_wer([]) == 0.0


# --- percentile and table ------------------------------------------------------------------------


def test_percentile_linear_interpolation():
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([4, 1, 3, 2], 0) == 1
    assert percentile([4, 1, 3, 2], 100) == 4
    assert percentile([10, 20, 30, 40, 50], 90) == pytest.approx(46.0)  # position 3.6: 40 + 0.6 * 10
    assert percentile([10, 20, 30, 40, 50], 25) == 20.0
    assert percentile([7.5], 99) == 7.5


def test_percentile_rejects_bad_input():
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1, 2], 101)
    with pytest.raises(ValueError):
        percentile([1, 2], -1)


def test_format_table_aligns_columns():
    rows = [
        {"label": "note", "n": 10, "f1": 0.5},
        {"label": "complaint", "n": 3, "f1": 1.0},
        {"label": "other"},
    ]
    assert format_table(rows, ["label", "n", "f1"]) == "\n".join(
        [
            "label       n     f1",
            "---------  --  -----",
            "note       10  0.500",
            "complaint   3  1.000",
            "other",
        ]
    )


def test_format_table_text_columns_and_no_rows():
    rows = [{"lang": "en", "ok": True}, {"lang": "pt-br", "ok": False}]
    assert format_table(rows, ["lang", "ok"]) == "lang   ok\n-----  -----\nen     True\npt-br  False"
    assert format_table([], ["a", "bb"]) == "a  bb\n-  --"


# --- the evaluation set --------------------------------------------------------------------------


def test_messages_set_invariants():
    messages = load_jsonl("messages.jsonl")
    assert len(messages) >= 300

    ids = [m["id"] for m in messages]
    assert len(ids) == len(set(ids))
    for m in messages:
        assert set(m) == {"id", "language", "text", "intent", "sentiment"}, m
        assert re.fullmatch(rf"{m['language']}-\d{{3}}", m["id"]), m
        assert m["text"].strip() == m["text"] != "", m
        assert m["intent"] in INTENTS, m
        assert m["sentiment"] in SENTIMENTS, m

    per_language = Counter(m["language"] for m in messages)
    assert set(per_language) >= MAIN_LANGUAGES
    assert sum(count >= 70 for count in per_language.values()) >= 4
    for language in MAIN_LANGUAGES:
        assert per_language[language] >= 70, language

    per_language_intent = Counter((m["language"], m["intent"]) for m in messages)
    for language in per_language:
        for intent in INTENTS:
            assert per_language_intent[language, intent] >= 5, (language, intent)

    texts = [(m["language"], m["text"]) for m in messages]
    assert len(texts) == len(set(texts)), "duplicate message text within a language"


def test_clips_set_invariants():
    clips = load_jsonl("clips.jsonl")
    assert len(clips) == 20
    assert len({c["id"] for c in clips}) == 20
    assert Counter(c["language"] for c in clips) == {"en": 5, "es": 5, "pt": 5, "de": 5}
    for clip in clips:
        assert set(clip) == {"id", "language", "file", "text", "intent", "sentiment"}, clip
        assert clip["file"] == f"clips/{clip['id']}.wav"
        assert clip["text"].strip()
        assert clip["intent"] in INTENTS
        assert clip["sentiment"] in SENTIMENTS
        path = EVAL_DIR / clip["file"]
        assert path.is_file(), path
        with wave.open(str(path), "rb") as w:
            assert w.getnchannels() == 1
            assert w.getsampwidth() == 2
            seconds = w.getnframes() / w.getframerate()
        assert 1.0 < seconds < 10.0, (clip["id"], seconds)
