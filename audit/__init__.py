"""audit: audit trained classifiers before they ship; this module is the public plugin API."""

from audit.analysis import Analysis, Context, Figure, Finding, Metric, Options, Plan, PlanInfo, Severity, predicted_classes
from audit.errors import AuditError
from audit.hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = [
    "Analysis",
    "AuditError",
    "Context",
    "Figure",
    "Finding",
    "Metric",
    "Options",
    "Plan",
    "PlanInfo",
    "Severity",
    "hookimpl",
    "predicted_classes",
    "__version__",
]
