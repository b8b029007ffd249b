"""The BI: sales explorer, predictions against actuals, model history, drift.

Run with `python -m mlsys.bi serve`. Queries are cached (st.cache_data) so pages stay
fast on the full data; the cache expires after a minute so new jobs show up.
"""

import altair as alt
import pandas as pd
import streamlit as st

from mlsys.beverage.database import get_engine
from mlsys.beverage.tables import DATASET_MEASURE, REALISED_WAPE_MEASURE
from mlsys.beverage.tracking import Forecaster, forecasting_settings
from mlsys.bi import access, queries
from mlsys.common.metrics import measured_page
from mlsys.common.settings import mlflow_tracking_uri
from mlsys.common.tracking import CHAMPION

CACHE_SECONDS = 60


@st.cache_data(ttl=CACHE_SECONDS)
def master() -> pd.DataFrame:
    return queries.master(get_engine())


@st.cache_data(ttl=CACHE_SECONDS)
def daily_sales(by: str, regions: tuple, stores: tuple, items: tuple) -> pd.DataFrame:
    return queries.daily_sales(
        get_engine(), by=by, regions=list(regions), stores=list(stores), items=list(items)
    )


@st.cache_data(ttl=CACHE_SECONDS)
def predictions() -> pd.DataFrame:
    return queries.predictions_vs_actuals(get_engine())


@st.cache_data(ttl=CACHE_SECONDS)
def model_history() -> pd.DataFrame:
    return queries.model_history(
        mlflow_tracking_uri(), forecasting_settings().registered_model_name
    )


@st.cache_data(ttl=CACHE_SECONDS)
def drift_results() -> pd.DataFrame:
    return queries.drift_results(get_engine())


def sales_page() -> None:
    st.header("Sales explorer")
    choices = master()
    left, middle, right = st.columns(3)
    regions = left.multiselect("Region", sorted(choices["region"].unique()))
    store_options = choices[choices["region"].isin(regions)] if regions else choices
    stores = middle.multiselect("Store", sorted(store_options["store"].unique()))
    items = right.multiselect("Item", sorted(choices["item"].unique()))
    by = left.radio("Break down by", ["item", "store", "region"], horizontal=True)
    period = middle.radio("Period", ["weekly", "daily", "monthly"], horizontal=True)
    frame = daily_sales(by, tuple(regions), tuple(stores), tuple(items))
    if frame.empty:
        st.info("No sales registered yet: run `python -m mlsys.data_registration register`.")
        return
    totals = queries.resample(frame, by, period)
    st.metric("Units sold in the selection", f"{int(totals['sales'].sum()):,}")
    chart = (
        alt.Chart(totals)
        .mark_line(point=period != "daily")
        .encode(
            x=alt.X("date:T", title=period),
            y=alt.Y("sales:Q", title="units"),
            color=f"{by}:N",
            tooltip=["date:T", f"{by}:N", "sales:Q", "amount:Q"],
        )
    )
    st.altair_chart(chart, width="stretch")
    share = totals.groupby(by, as_index=False)["sales"].sum()
    st.altair_chart(
        alt.Chart(share)
        .mark_bar()
        .encode(x=alt.X("sales:Q", title="units"), y=alt.Y(f"{by}:N", sort="-x")),
        width="stretch",
    )
    st.dataframe(totals.pivot_table(index="date", columns=by, values="sales"), width="stretch")


def evaluation_page() -> None:
    st.header("Predictions against actuals")
    frame = predictions()
    if frame.empty:
        st.info("No predictions yet: run `python -m mlsys.ml predict`.")
        return
    # Sources with judged weeks first: an open week has nothing to compare yet.
    judged_sources = frame.dropna(subset=["actual"])["source"].unique()
    sources = sorted(frame["source"].unique(), key=lambda s: (s not in judged_sources, s))
    left, middle, right = st.columns(3)
    source = left.selectbox(
        "Forecasts of",
        sources,
        help="A registered model version, or a backtest run's out-of-sample forecasts.",
    )
    stores = right.multiselect("Store", sorted(frame["store"].unique()))
    chosen = frame[frame["source"] == source]
    weeks = sorted(chosen["week_start"].dt.date.unique(), reverse=True)
    week = middle.selectbox("Week (Monday)", ["all", *weeks])
    if week != "all":
        chosen = chosen[chosen["week_start"].dt.date == week]
    if stores:
        chosen = chosen[chosen["store"].isin(stores)]
    judged = chosen.dropna(subset=["actual"])
    a, b, c = st.columns(3)
    a.metric("Predictions", len(chosen))
    if judged.empty:
        b.metric("WAPE", "open week")
        st.caption("The actual sales of these weeks are not complete yet.")
    else:
        wape = judged["error"].abs().sum() / judged["actual"].sum()
        b.metric("WAPE", f"{wape:.3f}")
        c.metric("MAE", f"{judged['error'].abs().mean():.1f}")
        per_item = (
            judged.groupby("item", as_index=False)[["prediction", "actual"]]
            .sum()
            .melt(id_vars="item", var_name="series", value_name="units")
        )
        if week == "all":
            per_week = (
                judged.groupby("week_start")
                .apply(lambda g: g["error"].abs().sum() / g["actual"].sum(), include_groups=False)
                .rename("wape")
                .reset_index()
            )
            st.altair_chart(
                alt.Chart(per_week)
                .mark_line(point=True)
                .encode(x=alt.X("week_start:T", title="week"), y="wape:Q"),
                width="stretch",
            )
        st.altair_chart(
            alt.Chart(per_item)
            .mark_bar()
            .encode(x=alt.X("item:N"), xOffset="series:N", y="units:Q", color="series:N"),
            width="stretch",
        )
    table = chosen.assign(week=chosen["week_start"].dt.date)[
        ["week", "region", "store", "item", "prediction", "actual", "error", "abs_pct_error"]
    ]
    st.dataframe(
        table.sort_values("abs_pct_error", ascending=False), width="stretch", hide_index=True
    )


def models_page() -> None:
    st.header("Model history")
    history = model_history()
    if history.empty:
        st.info("No registered model yet: run `python -m mlsys.ml train`.")
        return
    champion = history[history["aliases"].str.contains(CHAMPION)]
    if not champion.empty:
        st.metric(
            "Champion",
            f"version {champion['version'].iloc[0]}",
            f"WAPE {champion['model_wape'].iloc[0]:.4f}",
            delta_color="off",
        )
    long = history.melt(
        id_vars="version",
        value_vars=[f"{forecaster}_wape" for forecaster in Forecaster],
        var_name="forecaster",
        value_name="wape",
    )
    st.altair_chart(
        alt.Chart(long)
        .mark_line(point=True)
        .encode(x="version:O", y="wape:Q", color="forecaster:N"),
        width="stretch",
    )
    st.dataframe(history, width="stretch", hide_index=True)


def drift_page() -> None:
    st.header("Drift")
    results = drift_results()
    if results.empty:
        st.info("No drift check yet: run `python -m mlsys.monitoring drift forecaster`.")
        return
    realised = results[results["measure"] == REALISED_WAPE_MEASURE]
    checks = results[results["measure"] != REALISED_WAPE_MEASURE]
    latest = checks[checks["week_start"] == checks["week_start"].max()]
    latest = latest[latest["model_version"] == latest["model_version"].max()]
    dataset = latest[latest["measure"] == DATASET_MEASURE].iloc[0]
    a, b, c = st.columns(3)
    a.metric(
        f"Inputs drifted, week of {dataset['week_start']:%Y-%m-%d}",
        f"{dataset['score']:.0%}",
        help=f"Version {dataset['model_version']}; drift at {dataset['threshold']:.0%}.",
    )
    if realised.empty:
        b.metric("Realised WAPE", "no actuals yet")
    else:
        last = realised.iloc[-1]
        b.metric(
            f"Realised WAPE, week of {last['week_start']:%Y-%m-%d}",
            f"{last['score']:.3f}",
            help=f"Version {last['model_version']}; drift above {last['threshold']:.3f}.",
        )
    columns = latest[latest["measure"] != DATASET_MEASURE]
    c.metric("Columns drifted", f"{int(columns['drifted'].sum())} of {len(columns)}")
    st.subheader("Monitored columns against the champion's reference")
    bars = alt.Chart(columns).encode(y=alt.Y("measure:N", title=None))
    st.altair_chart(
        bars.mark_bar().encode(
            x=alt.X("score:Q", title="distance (reference standard deviations)"),
            color=alt.Color("drifted:N", scale=alt.Scale(domain=[False, True],
                                                          range=["#4c78a8", "#e45756"])),
        )
        + bars.mark_tick(color="black", thickness=2, size=20).encode(x="threshold:Q"),
        width="stretch",
    )  # fmt: skip
    st.subheader("Over time")
    shares = checks[checks["measure"] == DATASET_MEASURE].assign(series="inputs drifted (share)")
    errors = realised.assign(series="realised WAPE")
    over_time = pd.concat([shares, errors])[["week_start", "series", "score", "threshold"]]
    line = alt.Chart(over_time).encode(x=alt.X("week_start:T", title="week"))
    st.altair_chart(
        (line.mark_line(point=True).encode(y=alt.Y("score:Q", title=None), color="series:N")
         + line.mark_line(strokeDash=[4, 4]).encode(y="threshold:Q", color="series:N"))
        .facet(row=alt.Row("series:N", title=None))
        .resolve_scale(y="independent"),
    )  # fmt: skip
    st.dataframe(results.sort_values(["week_start", "measure"], ascending=[False, True]),
                 width="stretch", hide_index=True)  # fmt: skip


st.set_page_config(page_title="Beverage demand forecasting", layout="wide")
if not access.signed_in():
    st.stop()  # nothing of the data is rendered, or queried, before the login
st.navigation(
    [
        st.Page(measured_page(sales_page), title="Sales", default=True),
        st.Page(
            measured_page(evaluation_page), title="Predictions vs actuals", url_path="evaluation"
        ),
        st.Page(measured_page(models_page), title="Model history", url_path="models"),
        st.Page(measured_page(drift_page), title="Drift", url_path="drift"),
    ]
).run()
