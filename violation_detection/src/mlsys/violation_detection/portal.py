"""The review portal: moderators log in, see the violations found, and decide on them.

Run with `python -m mlsys.violation_detection portal`. Only users with the moderator role
get past the login (their AIAnimals password, checked against its Argon2 hash, throttled
with the API's logins); nothing of the violations is queried before it, and the role is
checked again on every rerun. User text is shown as text, never as Markdown. A decision
reactivates or keeps the post as decided and stores a label
(mlsys.violation_detection.review.decide).
"""

import html
from datetime import UTC, datetime, timedelta

import altair as alt
import streamlit as st

from mlsys.aianimals.database import get_engine
from mlsys.aianimals.settings import AuthSettings
from mlsys.aianimals.storage import photo_store
from mlsys.aianimals.throttle import LoginThrottle
from mlsys.common.metrics import measured_page
from mlsys.violation_detection import review


def heading(place, text: str) -> None:
    """User text (a post's name) as a heading of exactly its characters. Streamlit's
    Markdown would render a link, an image fetched from its host by every moderator's
    browser, or a bare URL made a link (escaping does not stop GFM's autolinks): HTML
    with the text escaped is the one element that shows text as text, in a heading."""
    place.html(f"<h3>{html.escape(text)}</h3>")


@st.cache_resource
def login_throttle() -> LoginThrottle:
    return LoginThrottle(AuthSettings())  # its limits; no key is needed


def signed_in() -> review.Reviewer | None:
    """The moderator of this browser session, checked again on every rerun (a revoked
    role, a deactivation, a logout or a new password ends the session); shows the login
    form when there is none."""
    if reviewer := st.session_state.get("reviewer"):
        if review.still_reviewing(get_engine(), reviewer):
            return reviewer
        del st.session_state["reviewer"]
        st.session_state["ended"] = "Your session has ended: log in again."
    st.title("AIAnimals moderation")
    if ended := st.session_state.pop("ended", None):
        st.warning(ended)
    with st.form("login"):
        handle = st.text_input("Handle name")
        password = st.text_input("Password", type="password")
        submitted = st.form_submit_button("Log in")
    if submitted:
        try:
            reviewer = review.log_in(get_engine(), login_throttle(), handle, password)
        except review.LoginRefused as refused:
            st.error(str(refused))
            return None
        st.session_state["reviewer"] = reviewer
        st.rerun()
    return None


def violations_page() -> None:
    st.header("Violations")
    left, middle, right = st.columns(3)
    types = left.multiselect("Type", ["no_animal_violation"], default=["no_animal_violation"])
    today = datetime.now(UTC).date()
    days = middle.date_input("Found between", (today - timedelta(days=30), today))
    state = right.radio("Decided", ["all", "not yet", "decided"], horizontal=True)
    since, until = (days[0], days[-1]) if isinstance(days, tuple) and days else (None, None)
    frame = review.violations(
        get_engine(),
        types=types or None,
        since=since,
        until=until,
        decided={"all": None, "not yet": False, "decided": True}[state],
    )
    if frame.empty:
        st.info("No violation in this selection.")
        return
    st.metric("Violations in the selection", f"{len(frame):,}")
    st.altair_chart(
        alt.Chart(review.per_day(frame))
        .mark_bar()
        .encode(
            x=alt.X("day:T", title="day found"),
            y=alt.Y("violations:Q", title="violations"),
            color=alt.Color("outcome:N"),
        ),
        width="stretch",
    )
    shown = frame.drop(columns=["photo_key"]).rename(columns={"deactivated": "post deactivated"})
    st.dataframe(shown, width="stretch", hide_index=True)


def queue_page() -> None:
    st.header("Review queue")
    reviewer: review.Reviewer = st.session_state["reviewer"]
    if done := st.session_state.pop("decided", None):
        st.success(done)
    wanted = st.text_input("Post id or name (empty: the oldest waiting)").strip()
    waiting = review.review_queue(get_engine(), limit=10, post=wanted or None)
    if waiting.empty:
        st.info(
            "No post matching that id or name awaits a decision."
            if wanted
            else "Nothing to review: every deactivated post has a decision."
        )
        return
    store = photo_store()
    for item in waiting.itertuples():
        with st.container(border=True):
            photo, facts = st.columns([1, 3])
            data = store.get(item.photo_key)
            if data is not None:
                photo.image(data, width=160)
            heading(facts, item.post)
            facts.write(
                f"Probability of no animal **{item.probability:.3f}** (threshold "
                f"{item.threshold:.3f}), model `{item.model_version}`, found "
                f"{item.created_at:%Y-%m-%d %H:%M} UTC"
            )
            approve, reverse = facts.columns(2)
            if approve.button("Approve: no animal", key=f"approve-{item.id}"):
                review.decide(get_engine(), item.id, reviewer, review.Decision.approved)
                st.session_state["decided"] = (
                    f"Approved: post {item.animal_id} stays out of search."
                )
                st.rerun()
            if reverse.button("Reverse: an animal", key=f"reverse-{item.id}"):
                review.decide(get_engine(), item.id, reviewer, review.Decision.reversed)
                decided = f"Reversed: post {item.animal_id} is back in search."
                st.session_state["decided"] = decided
                st.rerun()


st.set_page_config(page_title="AIAnimals moderation", layout="wide")
if (moderator := signed_in()) is None:
    st.stop()  # nothing of the violations is rendered, or queried, before the login
st.sidebar.text(f"Moderator: {moderator.handle_name}")  # text, never Markdown
st.navigation(
    [
        st.Page(measured_page(queue_page), title="Review queue", default=True),
        st.Page(measured_page(violations_page), title="Violations", url_path="violations"),
    ]
).run()
