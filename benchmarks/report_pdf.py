"""Length and render time of a PDF report (issue 14, targets: main part at most 20 pages, re-render at most 5 s).

    python -m benchmarks.report_pdf --db PATH [RUN]       # a stored run (default: latest), e.g. the credit demo's

Renders the run's print HTML, then lays it out with WeasyPrint's document API
(timed apart: HTML, layout, PDF bytes), and prints the pages, the page the
appendix starts on, and the figures inlined. Nothing is written to the store.
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", default="latest")
    parser.add_argument("--db", required=True)
    args = parser.parse_args()

    import weasyprint

    from audit.report import load_view, render_html, templates_root
    from audit.store import Store

    cpu_started = time.process_time()
    started = time.perf_counter()
    view = load_view(Store(args.db, create=False), args.run)
    html = render_html(view, for_print=True)
    html_s = time.perf_counter() - started
    started = time.perf_counter()
    document = weasyprint.HTML(string=html, base_url=str(templates_root())).render()
    layout_s = time.perf_counter() - started
    started = time.perf_counter()
    pdf = document.write_pdf()
    write_s = time.perf_counter() - started
    appendix = next((n for n, page in enumerate(document.pages, 1) if "appendix" in page.anchors), None)
    figures = html.count('<img src="data:')
    print(f"run {view['run']['id']}: {len(document.pages)} pages, appendix from page {appendix} "
          f"(main part {appendix - 1 if appendix else len(document.pages)} pages), {figures} figures inlined, {len(pdf) / 1e6:.2f} MB")
    # CPU seconds too: on a shared machine the wall clock says more about the neighbours than about the report.
    print(f"html {html_s:.2f} s, layout {layout_s:.2f} s, pdf {write_s:.2f} s: total {html_s + layout_s + write_s:.2f} s wall, "
          f"{time.process_time() - cpu_started:.2f} s CPU")


if __name__ == "__main__":
    main()
