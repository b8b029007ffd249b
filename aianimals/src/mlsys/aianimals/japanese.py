"""Japanese text to search terms, for the local search index (SudachiPy).

Mirrors what the Elasticsearch analyser does with kuromoji and ICU: width and case are
normalised, particles and symbols dropped, and each word is indexed by its normal form
and its reading, so that ねこ, ネコ, ﾈｺ and 猫 all match (normal form 猫, reading ネコ), as do
いぬ, 犬 and イヌ. Words are indexed whole and split into short units (ショートヘア, ヘア).
"""

import threading
import unicodedata

from sudachipy import Dictionary, SplitMode
from sudachipy.errors import SudachiError

# Parts of speech that carry no meaning for search (particles, auxiliaries, symbols).
_SKIPPED = {"助詞", "助動詞", "補助記号", "空白", "記号"}
_local = threading.local()


class Untokenizable(ValueError):
    """A text the tokenizer refuses: over its input limit (49,149 bytes), which a text can
    reach once normalised although the API took it (2,000 x U+FDFA: 66,000 bytes)."""


def _tokenizer():
    # A Sudachi tokenizer is not thread-safe; the dictionary is shared and loaded once.
    if not hasattr(_local, "tokenizer"):
        _local.tokenizer = _dictionary().tokenizer()
    return _local.tokenizer


_DICTIONARY: Dictionary | None = None
_DICTIONARY_LOCK = threading.Lock()


def _dictionary() -> Dictionary:
    global _DICTIONARY
    with _DICTIONARY_LOCK:
        if _DICTIONARY is None:
            _DICTIONARY = Dictionary(dict="core")
        return _DICTIONARY


def _is_japanese(text: str) -> bool:
    return any("\u3040" <= c <= "\u30ff" or "\u4e00" <= c <= "\u9fff" for c in text)


def _words(text: str, mode: SplitMode) -> list[tuple[str, tuple[str, ...]]]:
    """Per word: how it is written (after NFKC) and its forms: its normal form and, for
    Japanese words, its reading in katakana."""
    text = unicodedata.normalize("NFKC", text)
    words: list[tuple[str, tuple[str, ...]]] = []
    try:
        morphemes = _tokenizer().tokenize(text, mode)
    except SudachiError as error:
        raise Untokenizable(f"{len(text.encode())} bytes once normalised: {error}") from error
    for morpheme in morphemes:
        if morpheme.part_of_speech()[0] in _SKIPPED:
            continue
        normal = unicodedata.normalize("NFKC", morpheme.normalized_form()).lower()
        reading = morpheme.reading_form()
        forms = (normal, reading) if _is_japanese(normal) and reading != normal else (normal,)
        words.append((morpheme.surface(), forms))
    return words


def _word_forms(text: str, mode: SplitMode) -> list[tuple[str, ...]]:
    return [forms for _, forms in _words(text, mode)]


def index_terms(text: str) -> list[str]:
    """Terms to index: whole words and their short units, as normal forms and readings."""
    words = _word_forms(text, SplitMode.C) + _word_forms(text, SplitMode.A)
    return list(dict.fromkeys(form for forms in words for form in forms))


def query_terms(text: str) -> list[tuple[str, ...]]:
    """Per query word, the forms of which one must match (normal form or reading)."""
    return list(dict.fromkeys(_word_forms(text, SplitMode.C)))


def phrase_words(text: str) -> list[tuple[str, str]]:
    """The words of a text as (how it is written after NFKC, key), in order. The key is
    the word's last form: the reading of a Japanese word, else its normal form, so that
    words the index cannot tell apart (ねこ, ネコ, 猫: ネコ) share one. It is the vocabulary
    of similar words, and a similar word replaces the written word in a phrase."""
    return [(surface, forms[-1]) for surface, forms in _words(text, SplitMode.C)]
