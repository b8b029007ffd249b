"""Seeded synthetic AIAnimals activity: posts, likes and search access logs.

The original posts, likes and logs are not available, so they are generated with the
same shape. Every post has a hidden quality. Day by day, posts appear; the app's feed
shows them by popularity and freshness (rich get richer: more likes, more exposure), and
searches show them in the order the user chose; what users write, search and click is the
platform's model of its users (`mlsys.aianimals.users`), which the online simulator uses
too. Likes come from what was shown, so a like count measures exposure and age as much as
quality: a biased signal that a ranking model trained on impressions and clicks can
correct. The hidden quality is written beside the data (`hidden_quality.csv`) to evaluate
such a model, never to train it.

Posts and searches use nicknames (にゃんこ for 猫, ポメ for ポメラニアン), and
`synonym_queries.json` lists the queries that only a learned similar word can answer
fully, with what they mean (a category or a breed): the held-out set that evaluates query
expansion.
"""

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from mlsys.aianimals.ranking import RESULTS_SHOWN
from mlsys.aianimals.settings import HIDDEN_QUALITY_FILE, SYNONYM_QUERIES_FILE
from mlsys.aianimals.users import (
    ADJECTIVES,
    BREED_NICKNAMES,
    CATEGORY_NICKNAMES,
    CATEGORY_WORDS,
    Nicknames,
    act,
    breed_nicknames,
    choice,
    nicknamed,
    query_kind,
    relevance,
)
from mlsys.batch.dataset import MasterData, read_image_manifest

GENERATOR_VERSION = 3
FIRST_POST = datetime(2021, 6, 1, tzinfo=UTC)
LAST_POST = datetime(2021, 12, 31, tzinfo=UTC)
SEARCHES_FROM = FIRST_POST + timedelta(days=14)  # the app is used while posts appear
SEARCHES_UNTIL = LAST_POST + timedelta(days=31)
FEED_VIEWS_PER_POST = 0.5  # daily feed impressions: this many times the posts of the run
# (a steady audience: the first posts, with fewer rivals, get the most views)
FEED_RICH_GET_RICHER = 0.8  # exposure ~ (likes + 1) ** this
FEED_FRESHNESS_DAYS = 20.0  # exposure ~ exp(-age / this)
NO_ANIMAL_SHARE = 0.03  # of the posts: photos without an animal (moderation's violations)

PET_NAMES = [
    "ポチ", "タマ", "モモ", "ココ", "ソラ", "マロン", "チョコ", "レオ", "ハナ", "コタロウ",
    "ムギ", "きなこ", "あずき", "こむぎ", "さくら", "小太郎", "大福", "もち", "ルナ", "ミルク",
    "クッキー", "はっちゃん", "ゴン", "シロ", "クロ", "トラ", "ミケ", "ベル", "リン", "まる",
]  # fmt: skip
ACTIVITIES = [
    "お昼寝中です", "散歩が大好きです", "おもちゃで遊んでいます", "ごはんを待っています",
    "日向ぼっこしています", "こちらを見ています", "お風呂が苦手です", "毎日元気に走り回っています",
]  # fmt: skip
PLACES = ["公園で", "ソファの上で", "窓辺で", "庭で", "ベッドで", "海辺で", "リビングで"]


@dataclass
class GeneratedActivity:
    animals: pd.DataFrame
    likes: pd.DataFrame
    access_logs: pd.DataFrame
    hidden_quality: pd.DataFrame
    synonym_queries: list[dict] = field(default_factory=list)  # what the files' reader lacks


def synonym_queries(master: MasterData) -> list[dict]:
    """The held-out queries of similar words: each nickname and the word it stands for,
    with the category or breed they mean (the posts that are relevant)."""
    categories = master.categories.set_index("name_en")["id"]
    subcategories = master.subcategories.set_index("name_en")
    queries = [
        {"query": query, "animal_category_id": int(categories[category]),
         "animal_subcategory_id": None}
        for category, nicknames in CATEGORY_NICKNAMES.items()
        for query in (CATEGORY_WORDS[category][0], nicknames[0])
    ]  # fmt: skip
    queries += [
        {"query": query, "animal_category_id": None,
         "animal_subcategory_id": int(subcategories.loc[breed, "id"])}
        for breed, nickname in BREED_NICKNAMES.items()
        for query in (subcategories.loc[breed, "name_ja"], nickname)
    ]  # fmt: skip
    return queries


@dataclass(frozen=True)
class NoAnimalShift:
    """The share of posts without an animal changed for the posts created since a time
    (a drift the moderation's drift check should see)."""

    share: float
    since: datetime


# The order a search asks for: the text score (the app's default), newest or most liked
# first. After an app release that made newest first the default, most users keep it.
ORDERS = {"score": 0.6, "created_at": 0.2, "like": 0.2}
SHIFTED_ORDERS = {"score": 0.1, "created_at": 0.8, "like": 0.1}


@dataclass(frozen=True)
class NewestFirstShift:
    """Newest first the default order of the searches made since a time (SHIFTED_ORDERS):
    the results logged are then mostly fresh posts with little activity, a drift of what
    the ranker learns from that its drift check should see."""

    since: datetime


def generate_animals(
    master: MasterData,
    images: pd.DataFrame,
    posts: int,
    rng,
    variation,
    shift: NoAnimalShift | None = None,
) -> pd.DataFrame:
    categories = master.categories.set_index("id")
    subcategories = master.subcategories
    category_id = rng.choice([1, 2, 0], size=posts, p=[0.48, 0.49, 0.03])
    # Breeds are not equally popular: a Zipf-like weight per breed within its category.
    subcategory_id = np.zeros(posts, dtype=int)
    for category in (0, 1, 2):
        breeds = subcategories.loc[subcategories["animal_category_id"] == category, "id"].to_numpy()
        weights = 1 / np.arange(1, len(breeds) + 1) ** 0.7
        chosen = category_id == category
        subcategory_id[chosen] = rng.choice(
            rng.permutation(breeds), size=chosen.sum(), p=weights / weights.sum()
        )
    breed_ja = subcategories.set_index("id").loc[subcategory_id, "name_ja"].to_numpy()
    category_en = categories.loc[category_id, "name_en"].to_numpy()
    word = np.array([choice(rng, CATEGORY_WORDS[c], 1)[0] for c in category_en], dtype=object)
    nicknames = breed_nicknames(subcategories.set_index("name_en")["id"])
    breed_ja = nicknamed(breed_ja, [nicknames.get(int(i)) for i in subcategory_id], variation)
    word = nicknamed(word, [CATEGORY_NICKNAMES.get(c) for c in category_en], variation)
    adjective = choice(rng, ADJECTIVES, posts)
    name = choice(rng, PET_NAMES, posts)
    description = (
        adjective + breed_ja + "の" + word + "の" + name + "です。"
        + choice(rng, PLACES, posts) + choice(rng, ACTIVITIES, posts)
    )  # fmt: skip
    # A few posts without an animal, for moderation: NO_ANIMAL_SHARE of them, or from
    # `shift.since` on the share `shift` gives (drawn in the same order either way, so
    # that no shift gives the same posts as before shifts existed).
    draw = rng.random(posts)
    animal_files = images.loc[images["label"] == "animal", "file"].to_numpy()
    other_files = images.loc[images["label"] == "no_animal", "file"].to_numpy()
    other_photo = other_files[rng.integers(0, len(other_files), posts)]
    animal_photo = animal_files[rng.integers(0, len(animal_files), posts)]
    span = (LAST_POST - FIRST_POST).total_seconds()
    created_at = pd.to_datetime(
        [FIRST_POST + timedelta(seconds=float(s)) for s in np.sort(rng.random(posts) * span)]
    ).floor("s")
    share = np.full(posts, NO_ANIMAL_SHARE)
    if shift is not None:
        share[created_at >= pd.Timestamp(shift.since)] = shift.share
    no_animal = draw < share
    photo = np.where(no_animal, other_photo, animal_photo)
    users = master.users["id"].to_numpy()
    owner_weights = rng.pareto(1.5, len(users)) + 1  # a few users post a lot
    return pd.DataFrame(
        {
            "id": _hex_ids(rng, posts),
            "animal_category_id": category_id,
            "animal_subcategory_id": subcategory_id,
            "user_id": rng.choice(users, size=posts, p=owner_weights / owner_weights.sum()),
            "name": name,
            "description": description,
            "photo_key": "dataset/" + pd.Series(photo, dtype=object),
            "created_at": created_at,
            "updated_at": created_at,
            "adjective": adjective,  # kept for the click model; not loaded
            "no_animal": no_animal,
        }
    )


def _hex_ids(rng: np.random.Generator, count: int) -> list[str]:
    raw = rng.bytes(16 * count).hex()
    return [raw[i : i + 32] for i in range(0, 32 * count, 32)]


def _like_probability(quality: np.ndarray) -> np.ndarray:
    return 0.03 + 0.2 * quality


class _Likes:
    """Like events as they happen: (post index, user index, time)."""

    def __init__(self, posts: int, users: int, rng: np.random.Generator):
        self.counts = np.zeros(posts)
        self.users, self.rng = users, rng
        self.events: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def add(self, posts: np.ndarray, start: datetime, seconds: int) -> None:
        if len(posts) == 0:
            return
        np.add.at(self.counts, posts, 1)
        offsets = self.rng.integers(0, max(seconds, 1), len(posts))
        times = np.datetime64(start.replace(tzinfo=None), "s") + offsets.astype("timedelta64[s]")
        self.events.append((posts, self.rng.integers(0, self.users, len(posts)), times))

    def frame(self, animals: pd.DataFrame, users: np.ndarray) -> pd.DataFrame:
        posts, likers, times = (np.concatenate(parts) for parts in zip(*self.events, strict=True))
        likes = pd.DataFrame(
            {
                "animal_id": animals["id"].to_numpy()[posts],
                "user_id": users[likers],
                "created_at": pd.to_datetime(times).tz_localize(UTC),
            }
        ).sort_values("created_at", kind="stable")
        # A user likes a post once: the first time counts.
        return likes.drop_duplicates(["animal_id", "user_id"]).reset_index(drop=True)


def simulate_activity(
    animals: pd.DataFrame,
    master: MasterData,
    quality: np.ndarray,
    searches: int,
    rng,
    variation,
    newest_first: NewestFirstShift | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Likes and search sessions, day by day: (likes, access_logs)."""
    breed_ja = master.subcategories.set_index("id")["name_ja"]
    nicknames = breed_nicknames(master.subcategories.set_index("name_en")["id"])
    category_en = master.categories.set_index("id")["name_en"]
    users = master.users["id"].to_numpy()
    ids = animals["id"].to_numpy()
    category = animals["animal_category_id"].to_numpy()
    subcategory = animals["animal_subcategory_id"].to_numpy()
    adjective = animals["adjective"].to_numpy()
    created = pd.DatetimeIndex(animals["created_at"]).as_unit("s").asi8  # sorted: see above
    likes = _Likes(len(animals), len(users), rng)
    span = (SEARCHES_UNTIL - SEARCHES_FROM).total_seconds()
    search_times = np.sort(rng.random(searches) * span)
    search_ids = _hex_ids(rng, searches)
    names = ("search_id", "animal_id", "action", "user_id", "position", "phrases",
             "animal_category_id", "animal_subcategory_id", "sort_by", "created_at")  # fmt: skip
    columns: dict[str, list] = {name: [] for name in names}
    search = 0
    day = FIRST_POST
    while day < SEARCHES_UNTIL:
        # The feed of a day shows what was posted before it began.
        existing = int(np.searchsorted(created, int(day.timestamp()), side="right"))
        if existing:
            # The feed: popular and fresh posts are shown most, and liked in proportion.
            age_days = (day.timestamp() - created[:existing]) / 86400
            weight = (likes.counts[:existing] + 1) ** FEED_RICH_GET_RICHER * np.exp(
                -np.maximum(age_days, 0) / FEED_FRESHNESS_DAYS
            )
            views = rng.poisson(FEED_VIEWS_PER_POST * len(category) * weight / weight.sum())
            liked = rng.binomial(views, _like_probability(quality[:existing]))
            likes.add(np.repeat(np.arange(existing), liked), day, 86400)
        day_end = (day - SEARCHES_FROM).total_seconds() + 86400
        while search < searches and search_times[search] < day_end:
            when = SEARCHES_FROM + timedelta(seconds=float(search_times[search]))
            visible = int(np.searchsorted(created, int(when.timestamp()), side="right"))
            session = _search_session(
                rng, visible, category, subcategory, adjective, breed_ja, category_en,
                likes.counts, quality, Nicknames(nicknames, variation),
                newest_first is not None and when >= newest_first.since,
            )  # fmt: skip
            if session is not None:
                phrases, filters, sort_by, shown, actions = session
                likes.add(shown[actions["like"]], when + timedelta(seconds=30), 60)
                user_id = users[rng.integers(0, len(users))]
                for action, happened in actions.items():
                    positions = np.flatnonzero(happened)
                    n = len(positions)
                    columns["search_id"] += [search_ids[search]] * n
                    columns["animal_id"] += list(ids[shown[positions]])
                    columns["action"] += [action] * n
                    columns["user_id"] += [user_id] * n
                    columns["position"] += positions.tolist()
                    columns["phrases"] += [phrases] * n
                    columns["animal_category_id"] += [filters[0]] * n
                    columns["animal_subcategory_id"] += [filters[1]] * n
                    columns["sort_by"] += [sort_by] * n
                    columns["created_at"] += [when.replace(microsecond=0)] * n
            search += 1
        day += timedelta(days=1)
    logs = pd.DataFrame(columns)
    logs["model_name"] = None
    logs["created_at"] = pd.to_datetime(logs["created_at"])
    logs = logs.astype({"animal_category_id": "Int64", "animal_subcategory_id": "Int64"})
    return likes.frame(animals, users), logs


def _search_session(
    rng, visible, category, subcategory, adjective, breed_ja, category_en, like_counts, quality,
    nicknames: Nicknames, newest_first: bool = False,
):  # fmt: skip
    """One search: (phrases, (category filter, breed filter), sort_by, shown, actions), or
    None when nothing posted yet matches."""
    kind = query_kind(rng)
    pick = rng.integers(0, len(category))
    category_filter = subcategory_filter = None
    if kind == "breed":
        match = subcategory == subcategory[pick]
        phrases = [nicknames.breed(int(subcategory[pick]), breed_ja[subcategory[pick]])]
        subcategory_filter = int(subcategory[pick]) if rng.random() < 0.3 else None
    elif kind == "category":
        match = category == category[pick]
        name_en = category_en[category[pick]]
        phrases = [nicknames.category(name_en, str(choice(rng, CATEGORY_WORDS[name_en], 1)[0]))]
        category_filter = int(category[pick]) if rng.random() < 0.3 else None
    else:
        match = (adjective == adjective[pick]) & (category == category[pick])
        name_en = category_en[category[pick]]
        phrases = [adjective[pick], nicknames.category(name_en, CATEGORY_WORDS[name_en][0])]
    candidates = np.flatnonzero(match[:visible])
    if len(candidates) == 0:
        return None
    orders = SHIFTED_ORDERS if newest_first else ORDERS  # one draw either way
    sort_by = str(rng.choice(list(orders), p=list(orders.values())))
    if sort_by == "created_at":
        order = candidates[::-1]  # posts are generated in order of creation
    elif sort_by == "like":
        order = candidates[np.argsort(-like_counts[candidates], kind="stable")]
    else:  # lexical scores barely differ on short texts: close to a shuffle
        order = rng.permutation(candidates)
    shown = order[:RESULTS_SHOWN]
    actions = act(rng, relevance(quality[shown], kind))
    return phrases, (category_filter, subcategory_filter), sort_by, shown, actions


def generate(
    master: MasterData,
    images_dir: Path,
    posts: int,
    searches: int,
    seed: int,
    shift: NoAnimalShift | None = None,
    newest_first: NewestFirstShift | None = None,
):
    rng = np.random.default_rng(seed)
    variation = np.random.default_rng([seed, 1])  # nicknames: the rest is drawn as before
    manifest = read_image_manifest(images_dir)
    animals = generate_animals(master, manifest, posts, rng, variation, shift)
    quality = rng.beta(2, 4, posts)
    quality[animals["no_animal"].to_numpy()] *= 0.1  # nobody likes a photo of a stapler
    likes, access_logs = simulate_activity(
        animals, master, quality, searches, rng, variation, newest_first
    )
    hidden = pd.DataFrame({"animal_id": animals["id"], "quality": quality})
    return GeneratedActivity(
        animals.drop(columns=["adjective", "no_animal"]), likes, access_logs, hidden,
        synonym_queries(master),
    )  # fmt: skip


def write(activity: GeneratedActivity, directory: Path, provenance: dict) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    activity.animals.to_csv(directory / "animals.csv", index=False)
    activity.likes.to_csv(directory / "likes.csv", index=False)
    logs = activity.access_logs.assign(phrases=activity.access_logs["phrases"].map(json.dumps))
    logs.to_csv(directory / "access_logs.csv", index=False)
    activity.hidden_quality.to_csv(directory / HIDDEN_QUALITY_FILE, index=False)
    (directory / SYNONYM_QUERIES_FILE).write_text(
        json.dumps(activity.synonym_queries, ensure_ascii=False, indent=1)
    )
    (directory / "provenance.json").write_text(
        json.dumps(
            {"generator": "mlsys.batch generate", "version": GENERATOR_VERSION, **provenance},
            indent=2,
        )
    )
