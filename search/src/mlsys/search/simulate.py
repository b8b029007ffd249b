"""Simulated users of the app, through the real HTTP API (and the A/B test proxy in front
of it): each logs in and searches, writes and clicks as the platform's model of its users
says (`mlsys.aianimals.users`, the model the generator's logged history follows: a breed,
a category word or an adjective and a category, nicknames among them; rank k examined
with probability 1/(k+1)^0.8, then selected, viewed long and liked by the post's hidden
relevance). It sends the app's access logs (impressions with positions, then the actions)
and likes, as the Android app does. So an experiment runs end to end on one machine, with
the users the offline evaluation measured."""

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

from mlsys.aianimals.ranking import RESULTS_SHOWN
from mlsys.aianimals.users import (
    ACTIONS,
    ADJECTIVES,
    CATEGORY_WORDS,
    Nicknames,
    act,
    breed_nicknames,
    choice,
    query_kind,
    relevance,
)
from mlsys.common.logging import get_logger

log = get_logger(__name__)
SEARCHED_CATEGORIES = ["cat", "dog"]  # what users search by category: those with breeds


@dataclass
class SimulationStats:
    searches: int = 0
    shown: int = 0
    selects: int = 0
    likes: int = 0
    failures: int = 0
    variants: dict[str, int] = field(default_factory=dict)


class SimulatedUsers:
    def __init__(self, api: str, quality: pd.Series, dataset: Path, users: int, seed: int):
        self.api, self.quality = api.rstrip("/"), quality.to_dict()
        people = json.loads((dataset / "user.json").read_text())
        handles = sorted(u["handle_name"] for u in people.values() if not u.get("deactivated"))
        rng = np.random.default_rng(seed)
        self.handles = list(rng.choice(handles, min(users, len(handles)), replace=False))
        breeds = json.loads((dataset / "animal_subcategory.json").read_text())
        self.breeds = sorted(
            (b["subcategory"], b["name_ja"]) for b in breeds.values() if b["category"] > 0
        )
        self.nicknames = breed_nicknames({b["name_en"]: b["subcategory"] for b in breeds.values()})
        self.seed = seed
        self._tokens: dict[str, str] = {}
        self._lock = threading.Lock()
        self.stats = SimulationStats()

    def _token(self, client: httpx.Client, handle: str) -> str:
        if handle not in self._tokens:
            response = client.post(
                "/v0/user/login", json={"handle_name": handle, "password": "password"}
            )
            response.raise_for_status()
            self._tokens[handle] = response.json()["token"]
        return self._tokens[handle]

    def _phrases(self, rng: np.random.Generator, kind: str, nicknames: Nicknames) -> list[str]:
        category = str(choice(rng, SEARCHED_CATEGORIES, 1)[0])
        if kind == "breed":
            breed, name = self.breeds[rng.integers(len(self.breeds))]
            return [nicknames.breed(breed, name)]
        if kind == "category":
            return [nicknames.category(category, str(choice(rng, CATEGORY_WORDS[category], 1)[0]))]
        return [str(choice(rng, ADJECTIVES, 1)[0]),
                nicknames.category(category, CATEGORY_WORDS[category][0])]  # fmt: skip

    def _session(self, number: int) -> None:
        rng = np.random.default_rng([self.seed, number])
        nicknames = Nicknames(self.nicknames, np.random.default_rng([self.seed, number, 1]))
        handle = str(self.handles[rng.integers(len(self.handles))])
        kind = query_kind(rng)
        phrases = self._phrases(rng, kind, nicknames)
        with httpx.Client(base_url=self.api, timeout=30) as client:
            headers = {"token": self._token(client, handle)}
            answer = client.post(
                "/v0/animal/search",
                json={"phrases": phrases, "sort_by": "score"},
                params={"limit": RESULTS_SHOWN},
                headers=headers,
            )
            answer.raise_for_status()
            body = answer.json()
            results = body["results"]
            variant = answer.headers.get("x-ab-variant", "none")
            quality = np.array([float(self.quality.get(r["id"], 0.0)) for r in results])
            actions = act(rng, relevance(quality, kind))
            for position, result in enumerate(results):
                log_ = {"search_id": body["search_id"], "animal_id": result["id"],
                        "position": position, "phrases": phrases, "sort_by": "score"}  # fmt: skip
                for action in ACTIONS:  # each implies the one before
                    if not actions[action][position]:
                        break
                    client.post("/v0/access_log", json={**log_, "action": action},
                                headers=headers).raise_for_status()  # fmt: skip
                if actions["like"][position]:
                    client.post("/v0/like", json={"animal_id": result["id"]}, headers=headers)
        with self._lock:
            self.stats.searches += 1
            self.stats.shown += len(results)
            self.stats.selects += int(actions["select"].sum())
            self.stats.likes += int(actions["like"].sum())
            self.stats.variants[variant] = self.stats.variants.get(variant, 0) + 1

    def run(self, searches: int, concurrency: int) -> SimulationStats:
        def one(number: int) -> None:
            try:
                self._session(number)
            except httpx.HTTPError as error:
                with self._lock:
                    self.stats.failures += 1
                log.warning("simulated search %d failed error=%r", number, error)

        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(one, range(searches)))
        return self.stats
