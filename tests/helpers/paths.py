"""Where the repository and its real data are."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REAL = ROOT / "dataset" / "beverage"
REAL_SALES = REAL / "item_sale_records_202107_202112.csv"
SCREENSHOTS = ROOT / ".mlsys" / "screenshots"
