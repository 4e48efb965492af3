"""The homework script's quick mode, end to end against a real worker and the API over HTTP.

On generated data, whatever the suite's data folder: what is checked is the script's plan, waiting and report,
and 20 jobs evaluated on the real 10,000 MNIST and 1,000 cats-vs-dogs test images took most of the CI's time.
Real data end to end is tests/test_end_to_end.py's job. Two workers share the 20 jobs, so one child imports
TensorFlow while the other trains.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests.datagen import write_all
from tests.support import ROOT, Service, running_service

pytestmark = pytest.mark.e2e

QUEUE = "e2e-homework"


@pytest.fixture(scope="module")
def service(migrated_database: str, broker_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    data = write_all(tmp_path_factory.mktemp("homework-data"))
    with running_service(
        tmp_path_factory.mktemp("homework"), QUEUE, ["worker", "worker2"], env={"EPOCHAL_DATA_DIR": str(data)}
    ) as running:
        yield running


def table_rows(markdown: str, heading: str, header: str = "| rank | configuration | status |") -> list[str]:
    section = markdown.split(heading, 1)[1]
    table = section.split(header, 1)[1].split("\n\n", 1)[0]
    return [line for line in table.splitlines()[2:] if line.startswith("|")]


def test_quick_mode_reproduces_both_comparisons(service: Service, tmp_path: Path) -> None:
    out = tmp_path / "results"
    argv = ["--quick", "--url", service.base_url, "--out", str(out), "--poll", "1", "--key", service.api_key]
    result = subprocess.run(
        [sys.executable, "bench/homework.py", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr + service.logs()
    assert "finished" in result.stdout  # progress was printed while waiting
    report = (out / "homework.md").read_text()
    mnist_rows = table_rows(report, "## 1. Optimizers on MNIST")
    cats_rows = table_rows(report, "## 2. Output head and loss on cats vs dogs")
    # Quick mode runs every configuration twice, selected on held-out training data.
    assert len(mnist_rows) == 10 and len(cats_rows) == 10
    assert all("| held-out validation (" in row for row in mnist_rows + cats_rows)
    configurations = table_rows(report, "## 1. Optimizers on MNIST", "| rank | configuration | selected on |")
    assert len(configurations) == 5
    assert all("| 2 / 2 |" in row and " ± " in row for row in configurations)
    assert all("(p = " in row for row in configurations[:-1]) and "(last)" in configurations[-1]
    for optimizer in ("sgd_nesterov", "adagrad", "rmsprop", "adadelta", "adam"):
        assert any(f"optimizer={optimizer}" in row for row in mnist_rows)
    assert any("loss=mse" in row and "relu" in row for row in cats_rows)
    assert all("| succeeded |" in row for row in mnist_rows + cats_rows), report
    assert re.search(r"test accuracy \*\*0\.\d{4}\*\*", report)
    assert "| macro avg |" in report and "| weighted avg |" in report
    assert "## 3. Backpropagation by hand" in report and "| 2 | 4 | (1, -2, 0) |" in report
    images = re.findall(r"\]\(([^)]+\.png)\)", report)
    assert len(images) == 10
    for name in images:
        with Image.open(out / name) as image:
            assert image.format == "PNG"
            assert image.width > 300 and image.height > 200
