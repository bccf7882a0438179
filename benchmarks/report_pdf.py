"""Length and render time of a PDF report (issue 14, targets: main part at most 20 pages, re-render at most 5 s).

    python -m benchmarks.report_pdf --db PATH [RUN]       # a stored run (default: latest), e.g. the credit demo's
    python -m benchmarks.report_pdf --db PATH RUN --repeat 5   # the fastest of five renders, for a shared machine

Renders the run's print HTML, then lays it out with WeasyPrint's document API
(timed apart: HTML, layout, PDF bytes), and prints the pages, the page the
appendix starts on, and the figures inlined. Nothing is written to the store.
"""

from __future__ import annotations

import argparse
import gc
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", default="latest")
    parser.add_argument("--db", required=True)
    parser.add_argument("--repeat", type=int, default=1,
                        help="render this many times and print the fastest (each phase's own minimum)")
    args = parser.parse_args()

    import weasyprint

    from audit.report import load_view, render_html, templates_root
    from audit.store import Store

    timings = []
    for _ in range(max(1, args.repeat)):
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
        timings.append((html_s, layout_s, write_s, time.process_time() - cpu_started))
        if len(timings) < args.repeat:
            del document, pdf
            gc.collect()  # a render leaves ~10^6 objects behind; the next one would pay for collecting them
    appendix = next((n for n, page in enumerate(document.pages, 1) if "appendix" in page.anchors), None)
    figures = html.count('<img src="data:')
    print(f"run {view['run']['id']}: {len(document.pages)} pages, appendix from page {appendix} "
          f"(main part {appendix - 1 if appendix else len(document.pages)} pages), {figures} figures inlined, {len(pdf) / 1e6:.2f} MB")
    # CPU seconds too: on a shared machine the wall clock says more about the neighbours than about the report.
    # The first render pays the imports and the template compilation, as `audit report` does; the
    # fastest of the others is the one least disturbed by whatever else the machine runs.
    shown = [("", timings[0])]
    if len(timings) > 1:
        shown.append((f"fastest of the other {len(timings) - 1}: ", tuple(min(column) for column in zip(*timings[1:]))))
    for label, (html_s, layout_s, write_s, cpu_s) in shown:
        print(f"{label}html {html_s:.2f} s, layout {layout_s:.2f} s, pdf {write_s:.2f} s: "
              f"total {html_s + layout_s + write_s:.2f} s wall, {cpu_s:.2f} s CPU")


if __name__ == "__main__":
    main()
