"""The site on a hand-made database whose seeds are common random numbers: paired ranks."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from scipy.stats import ttest_ind, ttest_rel

from tests.conftest import PAIRED_DELTAS, paired_database


def test_the_ranking_separates_what_pairing_separates(tmp_path: Path, site: Any) -> None:
    url = f"sqlite:///{tmp_path / 'paired.sqlite'}"
    paired_database(url, PAIRED_DELTAS)
    at = site(url)
    assert not at.warning  # not everything ties
    ranking = at.dataframe[0]
    assert ranking.proto.placeholder == ""  # blank cells, not "None" (the latest rerun Δm)
    frame = ranking.value
    assert frame["name"].tolist() == ["uncertainty", "equal", "stl", "mgda"]
    # uncertainty leads; equal − uncertainty (−1.5, 1, −2) is not significant: rank 1;
    # stl − uncertainty (−11.5, −10, −12) is: rank 3; mgda − stl (−6, −11, −7) is: rank 4.
    assert frame["rank"].tolist() == [1, 1, 3, 4]
    assert frame["rank test"].tolist()[:2] == [
        "",
        "vs uncertainty: paired t, 3 seeds, p = "
        f"{ttest_rel(PAIRED_DELTAS['equal'], PAIRED_DELTAS['uncertainty']).pvalue:.2g}",
    ]
    assert frame["rank test"][3].startswith("vs stl: paired t, 3 seeds, p = 0.0")
    caption = at.caption[0].value
    assert "paired comparisons" in caption and "Welch's test when they share fewer" in caption
    # Unpaired intervals would have tied them all: each is about ±55.
    assert all(half > 50 for half in frame["± 95% CI"])


def test_compare_marks_equal_and_mgda_significantly_different(tmp_path: Path, site: Any) -> None:
    url = f"sqlite:///{tmp_path / 'paired.sqlite'}"
    ids = paired_database(url, PAIRED_DELTAS)
    at = site(url, "compare", compare=f"{ids['equal']},{ids['mgda']}")
    differences = at.dataframe[1].value.set_index("quantity")
    delta = differences.loc["Δm per task ↑"]
    equal, mgda = PAIRED_DELTAS["equal"], PAIRED_DELTAS["mgda"]
    # mgda − equal = (−16, −21, −17): −18 ± 4.302653 · √7 / √3 = −18 ± 6.572.
    assert delta["test"] == "paired t, 3 seeds" and math.isclose(delta["difference vs equal"], -18)
    assert math.isclose(delta["± 95% CI"], 4.302652729749464 * math.sqrt(7 / 3), rel_tol=1e-9)
    assert math.isclose(delta["p"], ttest_rel(mgda, equal).pvalue, rel_tol=1e-9)
    assert delta["significant"] and delta["verdict vs equal"] == "significantly worse"
    assert delta["P(improvement)"] == 0.0
    assert ttest_ind(mgda, equal, equal_var=False).pvalue > 0.05  # Welch would not see it
    # The metric itself, the same way (higher is better).
    miou = differences.loc["seg miou ↑"]
    assert miou["significant"] and miou["verdict vs equal"] == "significantly worse"
    assert "**3 of 3** differences are significant at 95%." in [m.value for m in at.markdown]


def test_a_notice_when_every_entry_ties(tmp_path: Path, site: Any) -> None:
    url = f"sqlite:///{tmp_path / 'noisy.sqlite'}"
    # Independent noise of ±10 at each seed, no method better than another.
    paired_database(url, {"stl": [-10.0, 0.0, 10.0], "a": [5.0, -9.0, 8.0], "b": [-7.0, 9.0, 2.0]})
    at = site(url)
    assert at.dataframe[0].value["rank"].tolist() == [1, 1, 1]
    [warning] = at.warning
    assert warning.value.startswith("All 3 entries tie at rank 1")
    assert "more seeds or a quieter protocol" in warning.value


def test_the_submission_page_says_how_it_was_placed(tmp_path: Path, site: Any) -> None:
    url = f"sqlite:///{tmp_path / 'paired.sqlite'}"
    ids = paired_database(url, PAIRED_DELTAS)
    at = site(url, "submission", submission=str(ids["mgda"]))
    [rank] = [m for m in at.metric if m.label == "rank"]
    assert rank.value == "4"
    assert "vs stl: paired t, 3 seeds" in rank.proto.help
