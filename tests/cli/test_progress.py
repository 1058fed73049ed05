"""Progress on long work when the output is a terminal: records, bytes, rate and ETA."""

from __future__ import annotations


def test_progress_line_has_rate_and_eta():
    from edge.commands.importer import progress_line

    line = progress_line(1200, 50_000_000, 200_000_000, 2.0)
    assert "25.0%" in line and "1200 records" in line and "25.0 MB/s" in line and "ETA 6s" in line


def test_export_progress_on_a_terminal_has_an_eta():
    import io

    from edge.commands.export import ProgressBar

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    now = [100.0]
    stream = Terminal()
    bar = ProgressBar(stream, width=10, clock=lambda: now[0])
    now[0] = 110.0  # 10 s for a quarter: 30 s to go
    bar(0.25, "25/100 records, 1.0 MB, 0.1 MB/s")
    assert stream.getvalue().startswith("\rexport [###.......]  25.0%  25/100 records") and "ETA 30s" in stream.getvalue()
