"""The search answer's wire format, written by the API and read by the A/B test proxy: a
JSON object whose first field is the search's new id (a uuid4's 32 hex digits), so that the
proxy finds it without parsing the body and the API's cache stores an answer without it."""

import re

SEARCH_ID_PREFIX = b'{"search_id":"'
SEARCH_ID_LENGTH = 32
_SEARCH_ID = re.compile(re.escape(SEARCH_ID_PREFIX) + rb"([0-9a-f]{%d})" % SEARCH_ID_LENGTH)


def search_id_of(body: bytes | memoryview) -> str | None:
    """The id a search answer starts with; None for any other body."""
    found = _SEARCH_ID.match(body)
    return found.group(1).decode() if found else None
