"""The image embedding's job, run for real on a seeded sample of the shipped photos with a
tiny model and two epochs: its report's figures and their ranges."""

import json

import pytest

from tests.helpers.cli import local_env, run_cli


@pytest.mark.slow
def test_build_image_index_reports_recall_and_precision_beside_chance(tmp_path):
    result = run_cli(
        "mlsys.search", "build-image-index", "--limit", "200", "--epochs", "2",
        "--resolution", "24", "--width", "4", "--output", str(tmp_path / "report.json"),
        env=local_env(tmp_path / "home") | {"TMPDIR": str(tmp_path)},
    )  # fmt: skip
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["photos"]["indexed"] == 200
    assert report["photos"]["test"] == 30  # the classifier's split: 15 % of the sample
    assert report["recall@10"] >= 0.95  # 200 vectors: HNSW is all but exact
    for figure in ("label", "subcategory"):
        assert 0 <= report[f"precision@10_{figure}"] <= 1
        assert 0 < report["chance"][figure] < 1
    # Most of the sample is no animal: a random neighbour shares the label most often.
    assert report["chance"]["label"] > 0.6 > report["chance"]["subcategory"]
    assert "recall@10" in result.stdout and "chance" in result.stdout
