"""JUnit XML: one test case per check, failures for failed checks, so CI shows the audit as tests."""

from __future__ import annotations

import re
from xml.etree import ElementTree as ET

# Characters XML 1.0 cannot hold at all, escaped or not: a data string with one
# (a control character in a class name) would make the whole file ill-formed.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml(value) -> str:
    """Text safe for an XML 1.0 attribute or element: forbidden characters shown as \\xNN (ElementTree escapes the rest)."""
    return _NOT_XML.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}", str(value))


def render_junit(view) -> str:
    run = view["run"]
    suites = ET.Element("testsuites", name=_xml(f"audit {run['id']}"))
    by_analysis: dict[str, list] = {}
    for finding in view["findings"]:
        by_analysis.setdefault(finding["analysis"], []).append(finding)
    for result in view["results"]:
        findings = by_analysis.get(result["analysis"], [])
        suite = ET.SubElement(
            suites, "testsuite", name=_xml(result["analysis"]), tests=str(max(len(findings), 1)),
            failures=str(sum(1 for f in findings if f["verdict"] == "failed" and not f.get("waiver"))),
            errors=str(1 if result["status"] in ("error", "not run") or (result["status"] == "interrupted" and not findings) else 0),
            skipped=str(1 if result["status"] == "skipped" else sum(1 for f in findings if f["verdict"] == "inconclusive" or (f["verdict"] == "failed" and f.get("waiver")))),
            time=f"{result['seconds']:.3f}",
        )
        if result["status"] in ("skipped", "error", "interrupted", "not run") and not findings:
            case = ET.SubElement(suite, "testcase", classname=_xml(result["analysis"]), name=_xml(result["analysis"]), time=f"{result['seconds']:.3f}")
            tag = "skipped" if result["status"] == "skipped" else "error"
            ET.SubElement(case, tag, message=_xml(result["reason"] or result["status"]))
            continue
        for finding in findings:
            name = finding["check"] + (f" [{finding['subject']}]" if finding["subject"] else "")
            case = ET.SubElement(suite, "testcase", classname=_xml(result["analysis"]), name=_xml(name))
            if finding["verdict"] == "inconclusive":
                # Not shown to pass, not shown to fail: a skipped test, never a red one.
                ET.SubElement(case, "skipped", message=_xml(f"inconclusive: {finding['message']}"))
            elif finding["verdict"] == "failed":
                if finding.get("waiver"):
                    ET.SubElement(case, "skipped", message=_xml(f"waived: {finding['waiver']['reason']}"))
                else:
                    failure = ET.SubElement(case, "failure", message=_xml(finding["message"]), type=_xml(finding["severity"]))
                    failure.text = _xml(f"value={finding['value']} threshold={finding['threshold']} severity={finding['severity']}")
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"
