"""Request and response bodies of the /v0 API (what the Android app sends and reads)."""

import unicodedata
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from fastapi import Query
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    model_validator,
)

from mlsys.aianimals.search import AnimalFields, SortBy


def _storable(value: object) -> object:
    """Text that the databases, the search engines and a JSON answer can all hold: no NUL
    (PostgreSQL refuses it) and no lone surrogate (it has no UTF-8)."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("must not contain a NUL character")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as error:
            raise ValueError("must be valid Unicode text (a lone surrogate is not)") from error
    return value


def normalised_within(limit: int) -> AfterValidator:
    """The length limit, held again by the text as search reads it (NFKC): one character
    can become 18 (U+FDFA), and 2,000 of them were more than the tokenizer takes."""

    def check(value: object) -> object:
        if isinstance(value, str) and len(unicodedata.normalize("NFKC", value)) > limit:
            raise ValueError(f"must be at most {limit} characters once normalised (NFKC)")
        return value

    return AfterValidator(check)


# Every text a client sends goes through one of these (body, query, form and path); the
# texts that are searched, tokenized or learned from also through normalised_within.
Storable = BeforeValidator(_storable)
Name = Annotated[
    str,
    Storable,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=64),
    normalised_within(64),
]
Short = Annotated[str, Storable, StringConstraints(max_length=64), normalised_within(64)]
Phrase = Annotated[str, Storable, StringConstraints(max_length=100), normalised_within(100)]
Password = Annotated[str, Storable, StringConstraints(min_length=1, max_length=128)]
NewPassword = Annotated[str, Storable, StringConstraints(min_length=8, max_length=128)]
HexId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginRequest(Strict):
    handle_name: Name | None = None
    email_address: Annotated[str, Storable, StringConstraints(max_length=128)] | None = None
    password: Password

    @model_validator(mode="after")
    def _one_identifier(self):
        if not self.handle_name and not self.email_address:
            raise ValueError("give handle_name or email_address")
        return self


class PasswordConfirmation(Strict):
    password: Password = Field(description="The current password, asked again")


class PasswordChange(PasswordConfirmation):
    new_password: NewPassword


class LoginResponse(BaseModel):
    user_id: str
    token: str


class UserCreate(Strict):
    handle_name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.\-]{3,64}$")] = Field(
        description="3-64 letters, digits, _ . -"
    )
    email_address: Annotated[EmailStr, Storable]
    password: NewPassword
    age: int = Field(ge=0, le=150)
    gender: int = Field(ge=0, le=2)


class RegistrationPending(BaseModel):
    """A sign-up waiting for its address to be confirmed; the same for every address."""

    handle_name: str
    email_address: str
    expires_at: datetime = Field(description="Until when the mailed link works")


class Verification(Strict):
    token: Annotated[str, StringConstraints(min_length=16, max_length=128)] = Field(
        description="The token of the link mailed at sign-up (after `#verify=`)"
    )


class UserPublic(BaseModel):
    id: str
    handle_name: str
    email_address: str
    age: int
    gender: int
    created_at: datetime


class AnimalCategoryPublic(BaseModel):
    id: int
    name_en: str
    name_ja: str
    is_deleted: bool


class AnimalSubcategoryPublic(AnimalCategoryPublic):
    animal_category_id: int


class ViolationTypePublic(BaseModel):
    id: str
    name: str


class Metadata(BaseModel):
    animal_category: list[AnimalCategoryPublic]
    animal_subcategory: list[AnimalSubcategoryPublic]
    violation_type: list[ViolationTypePublic]


class AnimalPublic(AnimalFields):
    photo_url: str


class SearchRequest(Strict):
    animal_category_name_en: Short | None = None
    animal_category_name_ja: Short | None = None
    animal_subcategory_name_en: Short | None = None
    animal_subcategory_name_ja: Short | None = None
    phrases: list[Phrase] = Field(
        default_factory=list, max_length=10, description="Every phrase must match (AND)."
    )
    sort_by: SortBy = SortBy.score
    seed: int | None = Field(
        default=None,
        ge=0,
        le=2**31 - 1,
        description="sort_by=random: the same seed, the same order",
    )


# A page of a listing, from the query string.
DEFAULT_LIMIT = 100
Limit = Annotated[int, Query(ge=1, le=200, description="At most 200 per page")]
Offset = Annotated[int, Query(ge=0, le=10_000)]


class Page(BaseModel):
    """A page as the routes validate it: what the search cache keys on."""

    limit: Limit
    offset: Offset


class SearchHitPublic(AnimalPublic):
    score: float


class SearchResponse(BaseModel):
    search_id: str = Field(description="Send it back with /v0/access_log")
    hits: int
    max_score: float
    offset: int
    results: list[SearchHitPublic]


class SimilarRequest(Strict):
    animal_id: HexId
    limit: int = Field(default=10, ge=1, le=100)


class SimilarHitPublic(AnimalPublic):
    similarity: float = Field(description="Cosine similarity of the photos' embeddings")


class SimilarResponse(BaseModel):
    model: str = Field(description="The image embedding's version that compared the photos")
    results: list[SimilarHitPublic] = Field(description="Most similar first")


class LikeCreate(Strict):
    animal_id: HexId


class LikePublic(BaseModel):
    animal_id: str
    user_id: str
    created_at: datetime


class Action(StrEnum):
    impression = "impression"
    select = "select"
    see_long = "see_long"
    like = "like"


class AccessLogCreate(Strict):
    search_id: HexId
    animal_id: HexId
    action: Action
    position: int | None = Field(default=None, ge=0, le=10_000)
    phrases: list[Phrase] = Field(default_factory=list, max_length=10)
    animal_category_id: int | None = Field(default=None, ge=0, le=2**31 - 1)
    animal_subcategory_id: int | None = Field(default=None, ge=0, le=2**31 - 1)
    sort_by: SortBy = SortBy.score
    model_name: Short | None = None


class Error(BaseModel):
    detail: str


def errors(*codes: int) -> dict:
    """OpenAPI entries for the error answers a route gives (all `{"detail": "..."}`)."""
    return {code: {"model": Error} for code in codes}


class Health(BaseModel):
    health: str
