"""A first download's bytes reach the callback once per percent, and nothing is drawn."""

from __future__ import annotations

from codellama_lsp.download_progress import describe, percentage, reporting_tqdm


def test_the_byte_bar_that_moves_is_reported_once_per_percent(capsys):
    reports: list[tuple[int, int]] = []
    bar_class = reporting_tqdm(lambda done, total: reports.append((done, total)))
    # As huggingface_hub's snapshot_download makes them: received bytes, written bytes, files.
    received = bar_class(total=0, initial=0, unit="B", desc="Downloading bytes")
    written = bar_class(total=0, initial=0, unit="B", desc="Reconstructing")
    files = bar_class(range(2), total=2, desc="Fetching 2 files")
    for size in (1000, 9000):  # each file adds its size as its download starts
        written.total += size
        received.total += size
    for _ in range(100):
        written.update(100)
    files.update(2)
    received.update(0)
    assert reports[-1] == (10_000, 10_000)
    assert [done * 100 // total for done, total in reports] == list(range(1, 101))
    assert capsys.readouterr() == ("", "")


def test_descriptions():
    assert describe(1_234_000_000, 13_500_000_000) == "1.2 GB of 13.5 GB (9%)"
    assert describe(512, 2048) == "512 B of 2.0 kB (25%)"
    assert percentage(5, 0) == 0
