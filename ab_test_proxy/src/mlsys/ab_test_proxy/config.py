"""An experiment's configuration, validated before the proxy serves anything: a bad one
stops it at start with the key that is wrong."""

from enum import StrEnum
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mlsys.aianimals.search import SortBy


class Mode(StrEnum):
    random = "random"  # each request drawn by the weights
    user = "user"  # a user always gets the same variant (hash of the user id)
    # No `animal` mode: a search names no post (its body forbids animal_id), so a split
    # by post could never split searches, the only requests given a variant.


class Variant(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=32, pattern=r"^[a-z0-9_-]+$")
    weight: float = Field(gt=0)
    # What the variant changes: the search's order, and/or the API that answers it.
    sort_by: SortBy | None = None
    upstream: str | None = Field(default=None, pattern=r"^https?://")


class Experiment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=24, pattern=r"^[a-z0-9_-]+$")
    mode: Mode
    upstream: str = Field(pattern=r"^https?://", description="The API everything else goes to")
    variants: list[Variant] = Field(min_length=2)

    @model_validator(mode="after")
    def _distinct_names(self):
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"variants: names must differ, got {names}")
        return self

    def shares(self) -> list[float]:
        total = sum(v.weight for v in self.variants)
        return [v.weight / total for v in self.variants]

    def label(self, variant: Variant) -> str:
        """What the access logs record (model_name): the experiment and the variant."""
        return f"{self.name}:{variant.name}"


class InvalidConfig(ValueError):
    pass


def load_experiment(path: Path) -> Experiment:
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise InvalidConfig(f"{path}: {error}") from error
    try:
        return Experiment.model_validate(raw)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}"
            for e in error.errors()
        )
        raise InvalidConfig(f"{path}: {problems}") from error
