"""Progress bars stay sparse off a terminal (every update went into log files)."""

import io
import sys
import time

from sian import _progress


def test_off_a_terminal_the_bar_prints_rarely(monkeypatch):
    log = io.StringIO()  # not a TTY, like `nohup sian train ... > log`
    monkeypatch.setattr(sys, "stderr", log)
    for _ in _progress.progress_bar(range(60), desc="work"):
        time.sleep(0.01)  # 0.6 s: plain tqdm would redraw about six times
    assert log.getvalue().count("work") <= 3  # the first draw, perhaps one more, the final one


def test_on_a_terminal_the_bar_redraws(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    bar = _progress.progress_bar(total=3, desc="work", mininterval=0)
    for _ in range(3):
        bar.update()
    bar.close()
    assert terminal.getvalue().count("work") >= 3
