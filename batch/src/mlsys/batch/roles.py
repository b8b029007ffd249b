"""Roles of the app's users: who may do what besides using the app."""

from sqlalchemy import Engine, func, update

from mlsys.aianimals.tables import Role, User


def grant_role(engine: Engine, handle_name: str, role: Role) -> bool:
    """Give the user with this handle (in any case) the role; False: no such user."""
    with engine.begin() as db:
        changed = db.execute(
            update(User)
            .where(func.lower(User.handle_name) == handle_name.lower())
            .values(role=role)
        ).rowcount
    return bool(changed)
