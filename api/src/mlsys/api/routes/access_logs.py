from fastapi import APIRouter, Request, status
from sqlalchemy.dialects import postgresql, sqlite

from mlsys.aianimals.tables import AccessLog
from mlsys.api.animals import now
from mlsys.api.clients import from_trusted_proxy
from mlsys.api.deps import CurrentUserId, SessionDep
from mlsys.api.schemas import AccessLogCreate, errors

router = APIRouter(prefix="/v0/access_log", tags=["access_log"], responses=errors(401))


@router.post("", status_code=status.HTTP_201_CREATED, response_model=AccessLogCreate)
def post_access_log(
    request: Request, session: SessionDep, user_id: CurrentUserId, access_log: AccessLogCreate
) -> AccessLogCreate:
    """Record what the user did with a search result (impression, select, see_long, like).

    The natural key is (search_id, animal_id, action): the app may retry safely.
    `model_name` (the experiment's variant) is kept only from the A/B test proxy, which
    labels the logs; a client's own is dropped, so no client can tilt an experiment.
    """
    if not from_trusted_proxy(request):
        access_log = access_log.model_copy(update={"model_name": None})
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    session.execute(
        dialect.insert(AccessLog)
        .values(**access_log.model_dump(mode="json"), user_id=user_id, created_at=now())
        # No conflict target: with one, PostgreSQL wants SELECT on its columns, which the
        # API's role has not (it writes access logs, never reads them). The primary key
        # is the table's only unique constraint, so this ignores exactly a retried POST.
        .on_conflict_do_nothing()
    )
    session.commit()
    return access_log
