"""The app's users as the platform models them: how they write about an animal, what they
search for, and what they do with the results they are shown. One model, used by the
generator (the logged history the ranker learns from, `mlsys.batch`) and by the simulator
(live users of an online experiment, `mlsys.search simulate`), so that the offline
evaluation and the online experiment measure the same users.

Clicks follow a position-based model over a post's hidden relevance r: rank k (from 0) is
examined with probability 1/(k+1)^EXAMINATION_DECAY; an examined result is selected with
probability 0.05 + 0.8 r, then viewed long with 0.2 + 0.7 r, then liked with 0.6 r. A
post's relevance is its quality, and 0.8 of it for a search that names no breed.

People write the same animal in ways Japanese normalisation does not fold: a cat is also
にゃんこ, a dog ワンコ, a Pomeranian ポメ. Posts and searches use such nicknames in
NICKNAME_SHARE of the cases that could, drawn from a stream of their own (`variation`) so
that adding them left every other draw as it was."""

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

# The same animal written three ways, as users do: searching any one must find them all.
CATEGORY_WORDS = {"cat": ["猫", "ねこ", "ネコ"], "dog": ["犬", "いぬ", "イヌ"], "other": ["動物"]}
CATEGORY_NICKNAMES = {"cat": ["にゃんこ", "ニャンコ"], "dog": ["ワンコ", "わんこ"]}
BREED_NICKNAMES = {
    "pomeranian": "ポメ",
    "yorkshire_terrier": "ヨーキー",
    "siamese": "サイアミーズ",
    "miniature_pinscher": "ミニピン",
    "american_pit_bull_terrier": "ピットブル",
}
NICKNAME_SHARE = 0.25
ADJECTIVES = ["かわいい", "元気な", "眠そうな", "ふわふわの", "おとなしい", "やんちゃな", "小さな"]

# What a search asks for: a breed by name, a category word, or an adjective and a category.
QUERY_KINDS = ("breed", "category", "adjective")
QUERY_SHARES = (0.5, 0.3, 0.2)
BROAD_QUERY_RELEVANCE = 0.8  # a post matters less to a search that names no breed
EXAMINATION_DECAY = 0.8
ACTIONS = ("impression", "select", "see_long", "like")  # each implies the one before


def choice(rng: np.random.Generator, options: list[str], size: int) -> np.ndarray:
    return np.asarray(options, dtype=object)[rng.integers(0, len(options), size)]


def nicknamed(words: np.ndarray, nicknames: list[list[str] | None], variation) -> np.ndarray:
    """Each word, or in NICKNAME_SHARE of the cases one of its nicknames where it has any."""
    chosen = words.copy()
    draws = variation.random(len(words))
    picks = variation.integers(0, 2**31, len(words))
    for i, options in enumerate(nicknames):
        if options and draws[i] < NICKNAME_SHARE:
            chosen[i] = options[picks[i] % len(options)]
    return chosen


def breed_nicknames(breed_ids: Mapping[str, int]) -> dict[int, list[str]]:
    """Breed id -> its nicknames, from the breeds' ids by English name."""
    return {int(breed_ids[name]): [nick] for name, nick in BREED_NICKNAMES.items()}


@dataclass
class Nicknames:
    """What a user types instead of a breed's name or a category word."""

    breeds: dict[int, list[str]]
    variation: np.random.Generator

    def breed(self, breed: int, name: str) -> str:
        return self.maybe(name, self.breeds.get(breed))

    def category(self, category_en: str, word: str) -> str:
        return self.maybe(word, CATEGORY_NICKNAMES.get(category_en))

    def maybe(self, word: str, options: list[str] | None) -> str:
        return str(nicknamed(np.array([word], dtype=object), [options], self.variation)[0])


def query_kind(rng: np.random.Generator) -> str:
    return str(rng.choice(QUERY_KINDS, p=QUERY_SHARES))


def relevance(quality: np.ndarray, kind: str) -> np.ndarray:
    """The hidden relevance of posts of this quality to a search of this kind."""
    return quality * (1.0 if kind == "breed" else BROAD_QUERY_RELEVANCE)


def act(rng: np.random.Generator, relevance: np.ndarray) -> dict[str, np.ndarray]:
    """What a user does with results of this relevance, shown in this order: for each
    action of ACTIONS, whether it happened at each position."""
    shown = len(relevance)
    examined = rng.random(shown) < 1 / (np.arange(1, shown + 1) ** EXAMINATION_DECAY)
    selected = examined & (rng.random(shown) < 0.05 + 0.8 * relevance)
    seen_long = selected & (rng.random(shown) < 0.2 + 0.7 * relevance)
    liked = seen_long & (rng.random(shown) < 0.6 * relevance)
    return dict(zip(ACTIONS, (np.ones(shown, dtype=bool), selected, seen_long, liked), strict=True))
