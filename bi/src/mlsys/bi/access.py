"""Who may open the BI: one user and password from the environment (BI_USERNAME,
BI_PASSWORD; `make secrets` writes a random password). Without a password the BI is open,
which only MLSYS_ENVIRONMENT=development allows (`make demo`); elsewhere an empty one is
refused at start.

The login lasts as long as the browser's Streamlit session (a reload asks again).
"""

import hmac
import time

import streamlit as st
from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from mlsys.common.settings import require_secret

FAILURE_DELAY_SECONDS = 1.0  # per wrong attempt: a guesser gets one try a second


class BiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BI_")

    username: str = "admin"
    password: SecretStr = SecretStr("")


def bi_settings() -> BiSettings:
    settings = BiSettings()
    require_secret("BI_PASSWORD", settings.password)
    return settings


def valid(settings: BiSettings, username: str, password: str) -> bool:
    # Both compared in constant time, and both always: timing tells nothing.
    user_ok = hmac.compare_digest(username.encode(), settings.username.encode())
    password_ok = hmac.compare_digest(
        password.encode(), settings.password.get_secret_value().encode()
    )
    return user_ok and password_ok


def signed_in() -> bool:
    """Whether this session may see the pages; shows the login form when not."""
    settings = bi_settings()
    if not settings.password.get_secret_value() or st.session_state.get("bi_user"):
        return True
    st.title("Beverage demand forecasting")
    with st.form("login"):
        username = st.text_input("User name")
        password = st.text_input("Password", type="password")
        submitted = st.form_submit_button("Log in")
    if submitted:
        if valid(settings, username, password):
            st.session_state["bi_user"] = username
            st.rerun()
        time.sleep(FAILURE_DELAY_SECONDS)
        st.error("Wrong user name or password.")
    return False
