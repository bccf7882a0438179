"""Rewriting BENCHMARKS.md keeps the sections other benchmark scripts wrote by hand."""

from benchmarks._report import with_written_sections


def test_a_rerun_replaces_the_device_tables_and_keeps_written_sections():
    previous = (
        "# Benchmarks\n\nold preamble\n\n## cpu: old machine\n\nold table\n\n"
        "## Verdicts (issue 13)\n\nnoise 0 of 20\n\n## cuda: NVIDIA H100, torch 2.11\n\nold gpu table\n\n"
        "## Cost (issue 19)\n\nplan 5m23s\n"
    )
    generated = "# Benchmarks\n\nnew preamble\n\n## cpu: new machine\n\nnew table\n"
    merged = with_written_sections(generated, previous)
    assert merged.startswith(generated.rstrip("\n"))
    assert "old table" not in merged and "old gpu table" not in merged and "old preamble" not in merged
    assert merged.index("## Verdicts (issue 13)") < merged.index("## Cost (issue 19)")
    assert "noise 0 of 20" in merged and "plan 5m23s" in merged
    assert with_written_sections(generated, "") == generated
