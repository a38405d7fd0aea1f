"""
Metrics for evaluating message classification and transcription against bench/ai_eval/.

Pure functions, standard library only: no database, no Django, no model. Label lists are compared position
by position, so `expected[i]` and `predicted[i]` must describe the same message; every function that takes
two lists raises ValueError if their lengths differ.

- accuracy_per_label: for each expected label, the fraction of its messages predicted correctly (recall).
- macro_f1: F1 per label, averaged with equal weight per label.
- agreement: the fraction of positions where the two lists agree.
- confusion: counts of (expected, predicted) pairs.
- word_error_rate / corpus_wer: word-level edit distance over reference words, after normalize_words.
- percentile: linear interpolation between closest ranks.
- format_table: aligned plain-text table for printing results.
"""

from __future__ import annotations

import math
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence

__all__ = [
    "accuracy_per_label",
    "agreement",
    "confusion",
    "corpus_wer",
    "format_table",
    "macro_f1",
    "normalize_words",
    "percentile",
    "word_edits",
    "word_error_rate",
]


def _check_pair(expected: Sequence[str], predicted: Sequence[str]) -> None:
    if len(expected) != len(predicted):
        raise ValueError(f"expected has {len(expected)} items, predicted has {len(predicted)}")


def accuracy_per_label(expected: Sequence[str], predicted: Sequence[str]) -> dict[str, float]:
    """For each label that occurs in `expected`, the fraction of those items whose prediction matches.

    This is recall per label. Labels that only occur in `predicted` are not keys of the result.
    Keys are sorted.
    """
    _check_pair(expected, predicted)
    support = Counter(expected)
    correct = Counter(e for e, p in zip(expected, predicted, strict=True) if e == p)
    return {label: correct[label] / support[label] for label in sorted(support)}


def macro_f1(expected: Sequence[str], predicted: Sequence[str], labels: Iterable[str] | None = None) -> float:
    """The unweighted mean of F1 over labels.

    `labels` defaults to every label in `expected` or `predicted`. A label with no expected item and no
    prediction (possible only when `labels` is given) is skipped rather than counted as 0 or 1. Precision
    or recall with a zero denominator is 0, and so is F1 when both are 0. Returns 0.0 if every label is
    skipped. Raises ValueError for empty input.
    """
    _check_pair(expected, predicted)
    if not expected:
        raise ValueError("no items to score")
    label_set = sorted(set(expected) | set(predicted)) if labels is None else list(dict.fromkeys(labels))
    true_pos: Counter[str] = Counter()
    false_pos: Counter[str] = Counter()
    false_neg: Counter[str] = Counter()
    for e, p in zip(expected, predicted, strict=True):
        if e == p:
            true_pos[e] += 1
        else:
            false_pos[p] += 1
            false_neg[e] += 1
    scores = []
    for label in label_set:
        tp, fp, fn = true_pos[label], false_pos[label], false_neg[label]
        if tp + fp + fn == 0:
            continue
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        scores.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    return sum(scores) / len(scores) if scores else 0.0


def agreement(expected: Sequence[str], predicted: Sequence[str]) -> float:
    """The fraction of positions where expected and predicted are equal. Raises ValueError for empty input."""
    _check_pair(expected, predicted)
    if not expected:
        raise ValueError("no items to compare")
    return sum(e == p for e, p in zip(expected, predicted, strict=True)) / len(expected)


def confusion(expected: Sequence[str], predicted: Sequence[str]) -> dict[tuple[str, str], int]:
    """Counts of (expected, predicted) pairs; pairs that never occur are absent. Keys are sorted."""
    _check_pair(expected, predicted)
    counts = Counter(zip(expected, predicted, strict=True))
    return {pair: counts[pair] for pair in sorted(counts)}


def normalize_words(text: str) -> list[str]:
    """Split text into comparable words for WER.

    1. Unicode NFC, so a composed "ã" and "a" + combining tilde are the same character.
    2. casefold (lower case for every script; German "ß" becomes "ss").
    3. Apostrophes (U+0027 and the typographic U+2019) are deleted, so "I'd" is one word "id" in both texts.
    4. Every other punctuation character (Unicode category P*: . , ! ? ¿ ¡ - : ; quotes ...) becomes a space,
       so "sexta-feira" is two words "sexta feira", as a transcriber that leaves out the hyphen writes it.
    5. Split on whitespace.

    Accents and other diacritics are kept: "está" and "esta" are different words. Symbols (Unicode S*, such as
    "€" or "+") and digits are kept as they are; "5" and "five" are different words.
    """
    text = unicodedata.normalize("NFC", text).casefold()
    chars = []
    for ch in text:
        if ch in "'\u2019":
            continue
        chars.append(" " if unicodedata.category(ch).startswith("P") else ch)
    return "".join(chars).split()


def word_edits(reference: str, hypothesis: str) -> tuple[int, int]:
    """(word-level Levenshtein distance, number of reference words) after normalize_words.

    Substitutions, insertions and deletions each cost 1.
    """
    ref = normalize_words(reference)
    hyp = normalize_words(hypothesis)
    previous = list(range(len(hyp) + 1))
    for i, ref_word in enumerate(ref, 1):
        current = [i]
        for j, hyp_word in enumerate(hyp, 1):
            current.append(
                min(
                    previous[j] + 1,  # deletion
                    current[j - 1] + 1,  # insertion
                    previous[j - 1] + (ref_word != hyp_word),  # substitution or match
                )
            )
        previous = current
    return previous[-1], len(ref)


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word error rate: word-level edit distance divided by the number of reference words.

    Both texts go through normalize_words first, so case and punctuation do not count but accents do:
    "¿Dónde está?" against "donde esta" is 2 substitutions over 2 words, 1.0. WER can exceed 1 when the
    hypothesis has extra words. With an empty reference the result is the number of hypothesis words (all
    insertions, divided by 1), so 0.0 when both are empty.
    """
    edits, ref_words = word_edits(reference, hypothesis)
    return edits / max(ref_words, 1)


def corpus_wer(pairs: Iterable[tuple[str, str]]) -> float:
    """Corpus WER over (reference, hypothesis) pairs: total edits divided by total reference words.

    Long references weigh more than short ones, unlike a mean of word_error_rate. If there are no reference
    words at all, the total edits divided by 1 (0.0 for no pairs).
    """
    total_edits = total_words = 0
    for reference, hypothesis in pairs:
        edits, words = word_edits(reference, hypothesis)
        total_edits += edits
        total_words += words
    return total_edits / max(total_words, 1)


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0 <= p <= 100) by linear interpolation between closest ranks.

    The sorted values sit at positions 0 .. n-1 and the percentile is read at position (n - 1) * p / 100,
    interpolating between its two neighbours: numpy's default ("linear") and Excel's PERCENTILE.INC.
    So percentile([1, 2, 3, 4], 50) is 2.5, p = 0 is the minimum and p = 100 the maximum.
    Raises ValueError for no values or p outside [0, 100].
    """
    if not values:
        raise ValueError("no values")
    if not 0 <= p <= 100:
        raise ValueError(f"p must be between 0 and 100, got {p}")
    ordered = sorted(values)
    position = (len(ordered) - 1) * p / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    fraction = position - low
    return ordered[low] + (ordered[high] - ordered[low]) * fraction


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def format_table(rows: Sequence[dict], columns: Sequence[str]) -> str:
    """Rows as an aligned plain-text table: a header line, a line of dashes, one line per row.

    Each column is as wide as its widest cell, header included. A column whose values are all numbers (int or
    float, not bool; missing values aside) is right-aligned, header too; other columns are left-aligned.
    Floats are shown with 3 decimals; a missing key or None is an empty cell. Columns are separated by two
    spaces and lines carry no trailing spaces. No trailing newline.
    """
    cells = [[_cell(row.get(col)) for col in columns] for row in rows]
    widths = [max([len(col)] + [len(line[i]) for line in cells]) for i, col in enumerate(columns)]
    numeric = []
    for col in columns:
        present = [row.get(col) for row in rows if row.get(col) is not None]
        numeric.append(bool(present) and all(_is_number(v) for v in present))

    def render(values: Sequence[str]) -> str:
        parts = [
            value.rjust(width) if is_num else value.ljust(width)
            for value, width, is_num in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    lines = [render(list(columns)), "  ".join("-" * w for w in widths)]
    lines.extend(render(line) for line in cells)
    return "\n".join(lines)
