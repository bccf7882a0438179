"""The PDF report's layout, checked on the rendered pages: no text outside the page, no overprinted cells, a short main part."""

import json

import pytest

import audit
from audit.plugins import get_plugin_manager

LONG = "a_check_name_without_any_place_to_break_it_" * 3


class Wide(audit.Analysis):
    """Long unbreakable names, a wide pivot table and float counts: what used to run off the page."""

    name = "test.wide"
    title = "Wide tables"

    def run(self, ctx):
        for i in range(4):
            yield audit.Finding(check=f"{LONG}{i}", title="long", severity="high" if i % 2 else "low", passed=i % 2 == 0,
                                value=0.25 + i, threshold=0.1, subject=f"subject_{LONG}", message="x " * 60 + LONG)
        for subject in ("explainer_one", "explainer_two"):
            for column in range(12):
                yield audit.Metric(f"faithfulness_metric_number_{column}", 1034.0 + column, subject=subject)
        yield audit.Metric("rows_seen", 441010.0)
        # A long group table: a detail, printed in the appendix as aligned text at a size that fits the page.
        for group in range(14):
            for column in range(8):
                yield audit.Metric(f"rate_number_{column}", 0.123456 + group, subject="grp", group=f"group_{group}_{LONG}",
                                   lower=0.1 + group, upper=1234.5678 + group)


class WidePlugin:
    @audit.hookimpl
    def register_analyses(self, register):
        register(Wide)


def text_boxes(page):
    """Every text box laid out on ``page`` (WeasyPrint's layout tree), with its position and size."""
    from weasyprint.formatting_structure import boxes

    def walk(box):
        if isinstance(box, boxes.TextBox):
            yield box
        for child in getattr(box, "children", []) or []:
            yield from walk(child)

    yield from walk(page._page_box)


@pytest.fixture
def wide_run(cli, assets):
    manager = get_plugin_manager()
    manager.register(WidePlugin(), name="wide")
    code, out, err = cli("run", assets.mlp_onnx, "--data", assets.data_npz, "-a", "test.wide", "-a", "performance", "--json",
                         "--fail-on", "never")
    assert code == 0, err
    yield json.loads(out)["run_id"]
    manager.unregister(name="wide")


def test_every_text_run_lies_inside_the_page_and_no_cell_overprints_the_next(wide_run):
    pytest.importorskip("weasyprint")
    import weasyprint

    from audit.report import load_view, render_html, templates_root
    from audit.store import Store

    view = load_view(Store(), wide_run)
    html = render_html(view, for_print=True)
    assert "1,034" in html and "1,034.0" not in html and "441,010" in html and "441,010.0" not in html  # counts as integers
    assert "<pre>" not in html  # no JSON dumps: options and config are tables
    assert html.count('id="options"') == 1 and "Options and thresholds</h3>" in html  # options once, in the appendix
    assert html.count('<pre class="text-table"') == 1  # the long group table, as text in the appendix
    document = weasyprint.HTML(string=html, base_url=str(templates_root())).render()
    outside, overlapping = [], []
    for number, page in enumerate(document.pages, 1):
        runs = [b for b in text_boxes(page) if b.text.strip()]
        for box in runs:
            if box.position_x < -0.5 or box.position_y < -0.5 or box.position_x + box.width > page.width + 0.5 \
                    or box.position_y + box.height > page.height + 0.5:
                outside.append((number, box.text[:40]))
        # Two text runs that share a line must not overlap horizontally (an overprinted column).
        for i, a in enumerate(runs):
            for b in runs[i + 1:]:
                same_line = abs(a.position_y - b.position_y) < 0.5 * min(a.height, b.height)
                if same_line and a.position_x < b.position_x + b.width - 0.5 and b.position_x < a.position_x + a.width - 0.5:
                    overlapping.append((number, a.text[:30], b.text[:30]))
    assert outside == [], outside[:5]
    assert overlapping == [], overlapping[:5]


def test_the_main_part_is_short_and_details_wait_in_the_appendix(wide_run):
    pytest.importorskip("weasyprint")
    import weasyprint

    from audit.report import load_view, render_html, templates_root
    from audit.store import Store

    html = render_html(load_view(Store(), wide_run), for_print=True)
    document = weasyprint.HTML(string=html, base_url=str(templates_root())).render()
    first_page_of = {}
    for number, page in enumerate(document.pages, 1):
        for anchor in page.anchors:
            first_page_of.setdefault(anchor, number)
    assert first_page_of["verdict"] == 1 and first_page_of["statement"] == 1 and first_page_of["signoff"] == 1
    # Two small analyses: the main part (before the appendix) fits in a few pages.
    assert first_page_of["appendix"] - 1 <= 6, first_page_of
    assert first_page_of["options"] >= first_page_of["appendix"] and first_page_of["cost"] >= first_page_of["appendix"]
