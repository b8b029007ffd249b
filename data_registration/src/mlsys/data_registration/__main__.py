"""Command line of the data-registration job."""

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from mlsys.common.logging import configure_logging
from mlsys.common.metrics import job, report_items
from mlsys.data_registration.files import InvalidInput
from mlsys.data_registration.generate import Shift

app = typer.Typer(
    help="Register beverage master data and daily sales in the database "
    "(SQLite under .mlsys/ by default, PostgreSQL with MLSYS_PROFILE=services).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.command()
def migrate() -> None:
    """Create or migrate the forecasting tables, then grant each component's PostgreSQL
    role (beverage_data_registration, beverage_ml, beverage_bi, where they exist) its
    privileges.

    Run it as the database's owner role, before the other components start: they connect
    as their own roles, which may not change tables, and only check the schema is current.
    """
    from mlsys.beverage.database import SCHEMA, get_engine, upgrade

    configure_logging()
    upgrade(get_engine())
    typer.echo(f"{SCHEMA.name}: at head")


@app.command()
@job
def register(
    master_dir: Annotated[
        Path | None,
        typer.Option(help="Folder with regions.csv, stores.csv, items.csv, item_prices.csv."),
    ] = None,
    sales: Annotated[
        Path | None,
        typer.Option(
            help="Daily sales CSV with the columns "
            "date,day_of_week,week_of_year,store,item,sales,total_sales_amount."
        ),
    ] = None,
    latest_week_only: Annotated[
        bool,
        typer.Option(
            help="Register only the ISO week after the latest one already in the database "
            "(the weekly feed): nothing, exit 0, when the file ends before that week; exit 1 "
            "when the file holds later weeks but not that one (a missing delivery)."
        ),
    ] = False,
    until_week: Annotated[
        str | None,
        typer.Option(
            help="Register sales only up to this ISO week, YYYY-WW (an initial registration "
            "that leaves the later weeks of the file to the weekly feed)."
        ),
    ] = None,
) -> None:
    """Validate the files, then upsert them in one transaction (running twice changes nothing).

    Bad input exits with status 1 and a `file:line:field: problem` message; nothing is written.
    """
    from mlsys.data_registration.register import last_day_of_week
    from mlsys.data_registration.register import register as run

    configure_logging()
    if master_dir is None and sales is None:
        raise typer.BadParameter("give --master-dir, --sales or both")
    if until_week is not None:
        try:
            last_day_of_week(until_week)
        except ValueError as error:
            raise typer.BadParameter(str(error), param_hint="--until-week") from error
    try:
        summary = run(
            master_dir=master_dir,
            sales_path=sales,
            latest_week_only=latest_week_only,
            until_week=until_week,
        )
    except InvalidInput as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from error
    if summary.nothing_after is not None:
        typer.echo(
            f"nothing to register: the file's sales end on {summary.nothing_after}, before "
            "the week after the latest registered one"
        )
        return
    report_items(summary.sales_rows_written)
    typer.echo(
        f"master rows written: {summary.master_rows}; sales rows read: {summary.sales_rows_read}, "
        f"selected: {summary.sales_rows_selected}, written: {summary.sales_rows_written}"
    )


@app.command()
def generate(
    output_dir: Annotated[
        Path, typer.Option(help="Folder to write the master files and the sales file into.")
    ],
    stores: Annotated[int, typer.Option(min=1, help="Number of stores.")] = 10,
    items: Annotated[int, typer.Option(min=1, help="Number of items.")] = 10,
    start: Annotated[
        datetime, typer.Option(formats=["%Y-%m-%d"], show_default="2017-01-02", help="First day.")
    ] = datetime(2017, 1, 2),
    end: Annotated[
        datetime, typer.Option(formats=["%Y-%m-%d"], show_default="2021-07-04", help="Last day.")
    ] = datetime(2021, 7, 4),
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same files.")] = 0,
    shift: Annotated[
        Shift,
        typer.Option(
            help="A shift from --shift-from on, for drift checks: every price up 30 %, every "
            "sale down 40 %, or the first store closed."
        ),
    ] = Shift.none,
    shift_from: Annotated[
        datetime | None, typer.Option(formats=["%Y-%m-%d"], help="The day the shift starts.")
    ] = None,
    real_master_dir: Annotated[
        Path | None,
        typer.Option(help="Take store and item names and prices from this real master data."),
    ] = Path("dataset/beverage"),
) -> None:
    """Write synthetic daily sales (weekly and yearly seasonality, price effects).

    The files are labelled as generated, so no model is evaluated on them by accident.
    """
    from mlsys.data_registration.generate import GenerationSpec
    from mlsys.data_registration.generate import generate as run

    configure_logging()
    try:
        spec = GenerationSpec(
            stores=stores,
            items=items,
            start=start.date(),
            end=end.date(),
            seed=seed,
            shift=shift,
            shift_from=shift_from.date() if shift_from else None,
        )
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error
    real = real_master_dir if real_master_dir and real_master_dir.is_dir() else None
    path = run(spec, output_dir, real)
    typer.echo(f"wrote {path}")


if __name__ == "__main__":
    app()
