"""JUnit XML: one test case per check, a failure only where the gate counts one, so CI's test view and job status agree."""

from __future__ import annotations

import re
from xml.etree import ElementTree as ET

# Characters XML 1.0 cannot hold at all, escaped or not: a data string with one
# (a control character in a class name) would make the whole file ill-formed.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml(value) -> str:
    """Text safe for an XML 1.0 attribute or element: forbidden characters shown as \\xNN (ElementTree escapes the rest)."""
    return _NOT_XML.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}", str(value))


def _counts_as_failure(finding) -> bool:
    """Whether the gate counts this finding (at or above --fail-on, not waived; inconclusive only with --fail-on-inconclusive)."""
    return bool(finding.get("gating"))


def render_junit(view) -> str:
    """One <testsuite> per analysis, one <testcase> per check.

    <failure>: the checks the gate counts, so the red tests are exactly what
    fails the job. <skipped>: inconclusive checks (not shown either way) and
    waived ones. Every other check, passed or failed below the gate, is a passed
    test case whose properties carry its verdict and severity and whose
    system-out carries its message.
    """
    run = view["run"]
    suites = ET.Element("testsuites", name=_xml(f"audit {run['id']}"))
    by_analysis: dict[str, list] = {}
    for finding in view["findings"]:
        by_analysis.setdefault(finding["analysis"], []).append(finding)
    for result in view["results"]:
        findings = by_analysis.get(result["analysis"], [])
        failing = [f for f in findings if _counts_as_failure(f)]
        skipped = [f for f in findings if not _counts_as_failure(f) and (f["verdict"] == "inconclusive" or (f["verdict"] == "failed" and f.get("waiver")))]
        suite = ET.SubElement(
            suites, "testsuite", name=_xml(result["analysis"]), tests=str(max(len(findings), 1)),
            failures=str(len(failing)),
            errors=str(1 if result["status"] in ("error", "not run") or (result["status"] == "interrupted" and not findings) else 0),
            skipped=str(1 if result["status"] == "skipped" else len(skipped)),
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
            interval = "" if finding.get("lower") is None else f" [{finding['lower']:.4g}, {finding['upper']:.4g}]"
            detail = f"value={finding['value']}{interval} threshold={finding['threshold']} severity={finding['severity']} verdict={finding['verdict']}"
            if _counts_as_failure(finding):
                failure = ET.SubElement(case, "failure", message=_xml(finding["message"]), type=_xml(finding["severity"]))
                failure.text = _xml(detail)
            elif finding["verdict"] == "failed" and finding.get("waiver"):
                ET.SubElement(case, "skipped", message=_xml(f"waived: {finding['waiver']['reason']}"))
            elif finding["verdict"] == "inconclusive":
                # Not shown to pass, not shown to fail: a skipped test, never a red one.
                ET.SubElement(case, "skipped", message=_xml(f"inconclusive: {finding['message']}"))
            else:
                props = ET.SubElement(case, "properties")
                for key in ("verdict", "severity"):
                    ET.SubElement(props, "property", name=key, value=_xml(finding[key]))
                if finding["verdict"] == "failed":
                    ET.SubElement(props, "property", name="below_gate", value=_xml(f"fails below --fail-on {run['fail_on']}"))
                out = ET.SubElement(case, "system-out")
                out.text = _xml(f"{finding['message']}\n{detail}")
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"
