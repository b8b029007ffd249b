import secrets
from typing import Annotated
from uuid import uuid4

from fastapi import APIRouter, File, Form, HTTPException, Query, Response, UploadFile, status
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic_core import to_json
from sqlalchemy import ColumnElement, select
from sqlalchemy.exc import SQLAlchemyError

from mlsys.aianimals import storage
from mlsys.aianimals.indexing import documents_query, to_document
from mlsys.aianimals.messages import Topic, add_to_outbox
from mlsys.aianimals.photos import MAX_PHOTO_BYTES, UnreadablePhoto, reencoded_photo
from mlsys.aianimals.ranking import RERANK_CANDIDATES
from mlsys.aianimals.search import RESULT_WINDOW, AnimalDocument, SearchQuery, SearchResult, SortBy
from mlsys.aianimals.tables import Animal, AnimalSubcategory
from mlsys.api import animals, metrics
from mlsys.api.deps import (
    CurrentUser,
    CurrentUserId,
    RankingDep,
    SearchIndexDep,
    SessionDep,
    SimilarImagesDep,
    SimilarWordsDep,
)
from mlsys.api.ranking import PredictionFailed, rerank
from mlsys.api.schemas import (
    DEFAULT_LIMIT,
    AnimalPublic,
    HexId,
    Limit,
    Offset,
    SearchRequest,
    SearchResponse,
    SimilarHitPublic,
    SimilarRequest,
    SimilarResponse,
    Storable,
    errors,
    normalised_within,
)
from mlsys.api.search_cache import CachedSearchRoute, search_response
from mlsys.api.similar import NotIndexed
from mlsys.api.similar_words import expanded
from mlsys.common.logging import get_logger

log = get_logger(__name__)
router = APIRouter(prefix="/v0/animal", tags=["animal"], responses=errors(401))


@router.get("", response_model=list[AnimalPublic])
def list_animals(
    session: SessionDep,
    current_user_id: CurrentUserId,
    id: HexId | None = None,
    animal_category_id: Annotated[int | None, Query(ge=0, le=2**31 - 1)] = None,
    animal_subcategory_id: Annotated[int | None, Query(ge=0, le=2**31 - 1)] = None,
    user_id: HexId | None = None,
    deactivated: Annotated[
        bool, Query(description="Deactivated posts instead: the logged-in user's own only")
    ] = False,
    limit: Limit = DEFAULT_LIMIT,
    offset: Offset = 0,
) -> list[AnimalPublic]:
    """Posts, newest first, filtered by any of the parameters."""
    filters: list[ColumnElement[bool]] = [Animal.deactivated.is_(deactivated)]
    if deactivated:
        filters.append(Animal.user_id == current_user_id)  # nobody sees another's
    filters += [
        column == value
        for column, value in (
            (Animal.id, id),
            (Animal.animal_category_id, animal_category_id),
            (Animal.animal_subcategory_id, animal_subcategory_id),
            (Animal.user_id, user_id),
        )
        if value is not None
    ]
    return animals.list_animals(session=session, filters=filters, limit=limit, offset=offset)


@router.get("/liked_by", response_model=list[AnimalPublic])
def liked_by(
    session: SessionDep,
    current_user_id: CurrentUserId,
    user_id: Annotated[HexId | None, Query(description="Default: the logged-in user")] = None,
    limit: Limit = DEFAULT_LIMIT,
    offset: Offset = 0,
) -> list[AnimalPublic]:
    """Posts a user has liked, most recently liked first."""
    return animals.liked_by(
        session=session, user_id=user_id or current_user_id, limit=limit, offset=offset
    )


@router.post(
    "",
    response_model=AnimalPublic,
    status_code=status.HTTP_201_CREATED,
    responses=errors(400, 413, 415),
)
def post_animal(
    session: SessionDep,
    user: CurrentUser,
    photo: Annotated[UploadFile, File(description="PNG or JPEG, at most 5 MiB")],
    name: Annotated[str, Storable, Form(min_length=1, max_length=128), normalised_within(128)],
    description: Annotated[str, Storable, Form(max_length=2000), normalised_within(2000)],
    animal_category_id: Annotated[int, Form(ge=0, le=2**31 - 1)],
    animal_subcategory_id: Annotated[int, Form(ge=0, le=2**31 - 1)],
) -> AnimalPublic:
    """Post a photo. It is stored, then the post and its `animal.created` message (search
    indexing, moderation) are committed together; it becomes searchable once indexed."""
    data = photo.file.read(MAX_PHOTO_BYTES + 1)
    if len(data) > MAX_PHOTO_BYTES:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, "the photo is over 5 MiB")
    try:
        # The classifier's rules: a photo it could not judge is never posted.
        data, extension = reencoded_photo(data)
    except UnreadablePhoto as error:
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, str(error)) from None
    category_of_breed = session.scalar(
        select(AnimalSubcategory.animal_category_id).where(
            AnimalSubcategory.id == animal_subcategory_id
        )
    )
    if category_of_breed != animal_category_id:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            f"animal_subcategory_id {animal_subcategory_id} is not a breed of "
            f"animal_category_id {animal_category_id} (see /v0/metadata)",
        )
    animal_id = uuid4().hex
    key = f"uploads/{animal_id[:2]}/{animal_id}.{extension}"
    store = storage.photo_store()
    created = animals.now()
    try:
        store.put(key, data, session.connection())  # in the post's transaction where it can
        session.add(
            Animal(
                id=animal_id,
                animal_category_id=animal_category_id,
                animal_subcategory_id=animal_subcategory_id,
                user_id=user.id,
                name=name,
                description=description,
                photo_key=key,
                deactivated=False,
                is_generated=False,
                created_at=created,
                updated_at=created,
            )
        )
        session.flush()
        add_to_outbox(session.connection(), Topic.animal_created, [{"animal_id": animal_id}])
        session.commit()
    except Exception:
        session.rollback()
        store.discard(key)  # no photo without its post
        raise
    posted = animals.get_animal(session=session, animal_id=animal_id)
    assert posted is not None  # committed just above
    return posted


def _search_fields(result: SearchResult, offset: int) -> bytes:
    """The response's fields after search_id, as search_cache.search_response wants them.
    The hits are validated documents: dumped as they are (what `animals.public` shows, the
    photo as a URL, and the score), by pydantic's serializer."""
    results = [
        {
            **hit.model_dump(mode="json", exclude={"photo_key"}),
            "photo_url": storage.url_of(hit.photo_key),
        }
        for hit in result.results
    ]
    body = {
        "hits": result.hits,
        "max_score": max((hit.score for hit in result.results), default=0.0),
        "offset": offset,
        "results": results,
    }
    return to_json(body)[1:]


async def search(
    request: SearchRequest,
    _: CurrentUserId,
    index: SearchIndexDep,
    ranking: RankingDep,
    similar_words: SimilarWordsDep,
    limit: Limit = DEFAULT_LIMIT,
    offset: Offset = 0,
) -> Response:
    """Search posts by phrases (all must match; ねこ, ネコ and 猫 are the same; a word's
    learned similar words match too, below it: ポメ finds ポメラニアン), category
    and breed names, sorted by score, likes, newest, a seeded random order, or
    `learn_to_rank`: the 100 most liked matches reordered by the champion ranker (page 2
    continues page 1; past them, the most liked order goes on). When the ranker or its
    features are unavailable, learn_to_rank answers in score order and says so in the
    `X-Ranking` header. Responses are cached until a post, a like, a deactivation or new
    similar words change the answer (an unseeded random order and learn_to_rank never
    are)."""
    if offset + limit > RESULT_WINDOW:  # a validation error, in the shape 422s declare
        raise RequestValidationError([{
            "type": "value_error", "loc": ("query", "offset"),
            "msg": f"offset + limit must be at most {RESULT_WINDOW}: narrow the search instead",
        }])  # fmt: skip
    seed = request.seed if request.seed is not None else secrets.randbelow(2**31)
    query = SearchQuery(
        **request.model_dump(exclude={"seed"}), seed=seed, limit=limit, offset=offset
    )
    if request.sort_by is SortBy.learn_to_rank:
        fields, ranked_by = await run_in_threadpool(
            lambda: _learned_order(index, ranking, expanded(query, similar_words))
        )
        response = search_response(fields)
        response.headers["X-Ranking"] = ranked_by
        response.headers["Cache-Control"] = "no-store"  # the champion may change any time
        return response
    # The engine's client blocks (SQLite, httpx): off the event loop.
    fields = await run_in_threadpool(
        lambda: _search_fields(index.search(expanded(query, similar_words)), offset)
    )
    response = search_response(fields)
    if request.sort_by is SortBy.random and request.seed is None:
        response.headers["Cache-Control"] = "no-store"
    return response


def _learned_order(index, ranking, query: SearchQuery) -> tuple[bytes, str]:
    """The fields of a learn_to_rank answer and the X-Ranking header that says how it was
    ordered: `learn_to_rank; model=NAME/VERSION` or `score; fallback=REASON`. Only the
    failures named here fall back (each counted by reason); any other error is a bug and
    answers 500."""

    def score_order(reason: str, why: str) -> tuple[bytes, str]:
        metrics.RANKING.labels("fallback", reason).inc()
        fallback = query.model_copy(update={"sort_by": SortBy.score})
        return _search_fields(index.search(fallback), query.offset), f"score; fallback={why}"

    model = ranking.ranker.loaded
    if model is None:
        return score_order("no_model", ranking.ranker.problem)
    if query.offset >= RERANK_CANDIDATES:
        # Past the reranked head the order is the engine's (most liked): this page alone,
        # as any other sort's, instead of every candidate up to it (22 ms at offset 1,800).
        metrics.RANKING.labels("reranked", "").inc()
        return _search_fields(index.search(query), query.offset), (
            f"learn_to_rank; model={model.name}"
        )
    window = max(RERANK_CANDIDATES, query.offset + query.limit)
    candidates = index.search(query.model_copy(update={"limit": window, "offset": 0}))
    try:
        head = rerank(
            candidates.results[:RERANK_CANDIDATES],
            query.phrases,
            bool(query.filters()),
            model,
            ranking.activity,
        )
    except SQLAlchemyError as error:
        log.warning("the ranking features are unavailable error=%r: score order", error)
        return score_order("features_unavailable", "the ranking features are unavailable")
    except PredictionFailed as error:
        log.warning("the ranker refused the features error=%s: score order", error)
        return score_order("prediction_failed", "the ranker could not score the posts")
    metrics.RANKING.labels("reranked", "").inc()
    ordered = head + candidates.results[RERANK_CANDIDATES:]
    page = SearchResult(
        hits=candidates.hits, results=ordered[query.offset : query.offset + query.limit]
    )
    return _search_fields(page, query.offset), f"learn_to_rank; model={model.name}"


# Added without a decorator: the only way to give one route its own route class.
router.add_api_route(
    "/search",
    search,
    methods=["POST"],
    response_model=SearchResponse,
    responses=errors(503),
    route_class_override=CachedSearchRoute,
)


@router.post("/search/similar", response_model=SimilarResponse, responses=errors(404, 503))
def similar_animals(
    request: SimilarRequest,
    session: SessionDep,
    current_user_id: CurrentUserId,
    similar_images: SimilarImagesDep,
) -> SimilarResponse:
    """Active posts whose photos look most like this post's (the champion image
    embedding, an approximate nearest-neighbour index), most similar first; never the
    post itself. A new post is comparable once embedded: within seconds."""
    shown: ColumnElement[bool] = Animal.deactivated.is_(False)
    query_post = session.scalar(
        select(Animal.id).where(
            Animal.id == request.animal_id, shown | (Animal.user_id == current_user_id)
        )
    )
    if query_post is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no post {request.animal_id}")
    documents: dict[str, AnimalDocument] = {}

    def active(ids: list[str]) -> set[str]:
        """The candidates that may be shown, their documents kept: one query per look."""
        missing = [i for i in ids if i not in documents]
        if missing:
            rows = session.execute(documents_query().where(Animal.id.in_(missing), shown))
            documents.update((document.id, document) for document in map(to_document, rows))
        return {i for i in ids if i in documents}

    try:
        model, found = similar_images.similar(request.animal_id, request.limit, active)
    except NotIndexed:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"post {request.animal_id} is not in the similar-image index yet "
            "(a new post is, seconds after it is made)",
        ) from None
    except LookupError as error:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(error)) from None
    results = [
        SimilarHitPublic(**animals.public(documents[i]).model_dump(), similarity=score)
        for i, score in found
    ]
    return SimilarResponse(model=model, results=results)
