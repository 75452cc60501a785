"""report.html shows a search collapse (edgenas.search.collapse) and the per-epoch share of
parameter-free ops beside the α trajectories. No build: a state.json and a round's search.json."""

from __future__ import annotations

import json
from html.parser import HTMLParser

from edgenas.report import write_report
from edgenas.report.collect import collect


class _Rows(HTMLParser):
    """Rows of the table with id ``skip-share``."""

    def __init__(self):
        super().__init__()
        self.rows, self._on = 0, False

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self._on = dict(attrs).get("id") == "skip-share"
        if tag == "tr" and self._on:
            self.rows += 1

    def handle_endtag(self, tag):
        if tag == "table":
            self._on = False


def _run(tmp_path, probs, arch):
    run = tmp_path / "run"
    (run / "rounds" / "r1").mkdir(parents=True)
    (run / "state.json").write_text(json.dumps({"config": {"rounds": 1}, "completed": {}}))
    history = [{"epoch": e, "skip_share_probs": p, "skip_share_arch": a, "probs": [[1 - p, p]]}
               for e, (p, a) in enumerate(zip(probs, arch), 1)]
    (run / "rounds" / "r1" / "search.json").write_text(json.dumps({"type": "search_result", "version": 1,
                                                                     "data": {"history": history}}))
    return run


def test_a_collapse_is_shown_with_its_epoch_and_the_share_per_epoch(tmp_path):
    run = _run(tmp_path, [0.2, 0.7, 0.4], [0.0, 1.0, 0.0])
    assert "at epoch 2" in collect(run).rounds[0].collapse
    html = write_report(run).read_text()
    assert 'id="collapse-r1"' in html and "rose past 0.50 at epoch 2" in html
    assert "search collapse" in html.split('id="summary"')[1].split("</table>")[0]   # flagged at the top too
    table = _Rows()
    table.feed(html)
    assert table.rows == 1 + 3                                                      # header + one row per epoch
    assert html.index("alpha trajectories") < html.index('id="skip-share"')


def test_no_collapse_no_warning_but_the_series_is_still_shown(tmp_path):
    run = _run(tmp_path, [0.2, 0.3, 0.25], [0.0, 0.0, 0.0])
    html = write_report(run).read_text()
    assert collect(run).rounds[0].collapse is None and 'id="collapse-r1"' not in html
    assert 'id="skip-share"' in html and "30.00 %" in html
