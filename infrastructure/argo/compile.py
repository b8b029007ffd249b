"""Compile the Hera definitions to the YAML files beside them: `make argo`."""

import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

import aianimals_moderation  # noqa: E402
import aianimals_search  # noqa: E402
import beverage_sales_forecasting  # noqa: E402

WORKFLOWS = (
    beverage_sales_forecasting.WORKFLOWS
    + aianimals_search.WORKFLOWS
    + aianimals_moderation.WORKFLOWS
)


def compiled() -> dict[Path, str]:
    return {
        HERE / f"{define.__name__.replace('_', '-')}.yaml": define().to_yaml()
        for define in WORKFLOWS
    }


if __name__ == "__main__":
    for path, text in compiled().items():
        path.write_text(text)
        print(f"wrote {path.relative_to(HERE.parent.parent)}")
