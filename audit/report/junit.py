"""JUnit XML: one test case per check, failures for failed checks, so CI shows the audit as tests."""

from __future__ import annotations

from xml.etree import ElementTree as ET


def render_junit(view) -> str:
    run = view["run"]
    suites = ET.Element("testsuites", name=f"audit {run['id']}")
    by_analysis: dict[str, list] = {}
    for finding in view["findings"]:
        by_analysis.setdefault(finding["analysis"], []).append(finding)
    for result in view["results"]:
        findings = by_analysis.get(result["analysis"], [])
        suite = ET.SubElement(
            suites, "testsuite", name=result["analysis"], tests=str(max(len(findings), 1)),
            failures=str(sum(1 for f in findings if not f["passed"] and not f.get("waiver"))),
            errors=str(1 if result["status"] in ("error", "not run") or (result["status"] == "interrupted" and not findings) else 0),
            skipped=str(1 if result["status"] == "skipped" else sum(1 for f in findings if not f["passed"] and f.get("waiver"))),
            time=f"{result['seconds']:.3f}",
        )
        if result["status"] in ("skipped", "error", "interrupted", "not run") and not findings:
            case = ET.SubElement(suite, "testcase", classname=result["analysis"], name=result["analysis"], time=f"{result['seconds']:.3f}")
            tag = "skipped" if result["status"] == "skipped" else "error"
            ET.SubElement(case, tag, message=result["reason"] or result["status"])
            continue
        for finding in findings:
            name = finding["check"] + (f" [{finding['subject']}]" if finding["subject"] else "")
            case = ET.SubElement(suite, "testcase", classname=result["analysis"], name=name)
            if not finding["passed"]:
                if finding.get("waiver"):
                    ET.SubElement(case, "skipped", message=f"waived: {finding['waiver']['reason']}")
                else:
                    failure = ET.SubElement(case, "failure", message=finding["message"], type=finding["severity"])
                    failure.text = f"value={finding['value']} threshold={finding['threshold']} severity={finding['severity']}"
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"
