"""With no terminal (CI, a pipe) the CLI prints timestamped plain lines instead of bars (issue 18,
point 7): a start line, progress at least every period, an end line, on stdout, so that a failing
command's stderr stays its one error line."""

from __future__ import annotations

import io
import re
import time

import pytest

from edgenas.cli.view import PlainReporter

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


def bar_lines(text: str) -> list[str]:
    """Lines of a rich progress bar as a log shows it ("profile ━━━━╺━━ 6/22 0:03:28 …"): bar glyphs
    beside text, an ellipsis, a carriage return or an escape sequence. A table's border lines are
    box glyphs only, and stay allowed."""
    return [ln for ln in text.splitlines() if re.search(r"[━╸╺].*\w|\w.*[━╸╺]", ln) or any(c in ln for c in "…\r\x1b")]


def test_piped_build_prints_plain_stage_lines_and_no_bars(tiny_run):
    _, proc = tiny_run   # the session's tiny build, run with stdout and stderr piped
    for stream in (proc.stdout, proc.stderr):
        assert not bar_lines(stream), bar_lines(stream)[:5]
    stages = re.findall(rf"^{STAMP} (.+): start\b", proc.stdout, re.M)
    ended = re.findall(rf"^{STAMP} (.+): end, .* in \d+\.\d s$", proc.stdout, re.M)
    assert {"profile op latencies (INT8, on target)", "QAT int8 (brevitas)"} <= set(stages), proc.stdout[:3000]
    assert sorted(stages) == sorted(ended)   # every stage that started, ended
    assert not re.search(rf"^{STAMP} .+: (start|end)", proc.stderr, re.M)   # progress never on stderr


def test_a_stage_without_steps_still_reports_progress_and_a_failure_says_stopped():
    buf = io.StringIO()
    rep = PlainReporter(stream=buf, period_s=0.1)
    with rep.stage("long stage", total=3) as advance:
        time.sleep(0.35)             # no advance at all: the heartbeat speaks
        advance(2, "two done")
    lines = buf.getvalue().splitlines()
    assert all(re.match(STAMP, ln) for ln in lines)
    assert lines[0].endswith("long stage: start (3 steps)") and re.search(r"long stage: end, 3/3 in \d+\.\d s$", lines[-1])
    assert len([ln for ln in lines if re.search(r"long stage: \d/3, \d+ s", ln)]) >= 2
    with pytest.raises(RuntimeError), rep.stage("broken"):
        raise RuntimeError("boom")
    assert re.search(r"broken: stopped after \d+\.\d s$", buf.getvalue().splitlines()[-1])
