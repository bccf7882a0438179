"""Check a torch.export archive's contents before torch sees it: nothing in it may unpickle or run code.

``torch.export.load`` trusts its file. An archive can flag weights or constants
``use_pickle`` (loaded with ``torch.load(weights_only=False)``), hold opaque or
TorchBind constants (``pickle.loads``), carry sample inputs or legacy weight
files that fail the safe load and are then retried unsafely, name any callable
reachable from ``torch`` as a graph node's target, put Python into a symbolic
shape (parsed with ``sympy.sympify``, which evaluates it), or ship AOTInductor
native code. An archive that ``torch.export.save`` writes for a plain classifier
needs none of these, so each is refused, naming ``--trust-model-code``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import tokenize
import zipfile
from pathlib import Path

from audit.errors import AuditError, first_line

TRUST_HINT = "re-export the model with torch.export.save, or pass --trust-model-code if you trust its author"

# Names a symbolic shape written by torch.export may use; everything else in an
# expression (exec, open, getattr, attribute access, subscripts) is refused.
SYMPY_NAMES = {
    "Symbol", "Integer", "Rational", "Float", "true", "false", "True", "False", "oo", "zoo", "nan",
    "positive", "negative", "nonnegative", "nonpositive", "integer", "real", "finite", "zero", "nonzero",
    "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "And", "Or", "Not", "Max", "Min", "Abs", "floor", "ceiling", "sqrt",
    "Mod", "Pow", "Mul", "Add", "Piecewise", "ITE",
    "FloorDiv", "ModularIndexing", "Where", "PythonMod", "CleanDiv", "CeilToInt", "FloorToInt", "CeilDiv",
    "LShift", "RShift", "PowByNatural", "FloatPow", "FloatTrueDiv", "IntTrueDiv",
    "IsNonOverlappingAndDenseIndicator", "TruncToFloat", "TruncToInt", "RoundToInt", "RoundDecimal", "ToFloat",
    "Identity",
}
SYMBOL_NAME = re.compile(r"^[a-z]{1,4}[0-9]+$")  # s0, s77, u3, zf1: shape symbols torch invents
SAFE_OPERATORS = {"(", ")", ",", "=", "+", "-", "*", "/", "//", "%", "**", "<", ">", "<=", ">=", "==", "!=", "&", "|", "~", "^"}
MAX_READ = 1 << 30  # the guard reads JSON and sample inputs whole: a zip bomb stops here, not in memory
OP_TARGET = re.compile(r"^torch\.ops(\.[A-Za-z_][A-Za-z0-9_]*){2,3}$")


def check_export_archive(path: Path) -> None:
    """Raise AuditError unless ``path`` is a torch.export archive that loads without unpickling or running code."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise AuditError(f"{path}: not a torch.export archive ({first_line(error)}); save it with torch.export.save") from None
    with archive:
        names = archive.namelist()
        if not names:
            raise AuditError(f"{path}: an empty archive, not a torch.export program; save it with torch.export.save")
        root = names[0].split("/")[0] + "/"
        if any(not name.startswith(root) for name in names):
            raise AuditError(f"{path}: not a torch.export archive (its files are not under one folder); save it with torch.export.save")
        entries = {name[len(root):] for name in names}

        def read(name: str) -> bytes:
            try:
                if archive.getinfo(root + name).file_size > MAX_READ:
                    raise AuditError(f"{path}: {name} inflates to more than {MAX_READ >> 30} GiB; not a model archive torch.export.save writes")
                return archive.read(root + name)
            except (KeyError, zipfile.BadZipFile, OSError, EOFError) as error:
                raise AuditError(f"{path}: {name} is missing or unreadable in the archive ({first_line(error)}); save it again with torch.export.save") from None

        if "archive_format" not in entries or read("archive_format").decode("utf-8", "replace").strip() != "pt2":
            raise AuditError(
                f"{path}: not in the torch.export archive format of torch 2.8 or later (older formats are loaded with pickle); "
                f"{TRUST_HINT}"
            )
        programs = sorted(name[len("models/"):-len(".json")] for name in entries if name.startswith("models/") and name.endswith(".json"))
        if "model" not in programs:
            raise AuditError(f"{path}: the archive holds no exported program (models/model.json); save it with torch.export.save")
        for name in sorted(entries):
            if name.startswith("data/aotinductor/"):
                raise AuditError(f"{path}: holds AOTInductor native code ({name}), which runs when loaded; {TRUST_HINT}")
        for program in programs:
            for legacy in (f"data/weights/{program}.pt", f"data/constants/{program}.pt"):
                if legacy in entries:
                    raise AuditError(f"{path}: holds {legacy} in the legacy pickled format; {TRUST_HINT}")
            _check_payloads(path, read, f"data/weights/{program}_weights_config.json", "weight")
            _check_payloads(path, read, f"data/constants/{program}_constants_config.json", "constant")
            _check_program(path, read(f"models/{program}.json"), f"models/{program}.json")
            sample = f"data/sample_inputs/{program}.pt"
            if sample in entries:
                _check_tensors_only(path, read(sample), sample)


def _json(path: Path, content: bytes, name: str):
    try:
        return json.loads(content)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise AuditError(f"{path}: {name} is not valid JSON ({first_line(error)}); save the model again with torch.export.save") from None


def _check_payloads(path: Path, read, name: str, kind: str) -> None:
    config = _json(path, read(name), name)
    payloads = config.get("config") if isinstance(config, dict) else None
    if not isinstance(payloads, dict):
        raise AuditError(f"{path}: {name} has no payload table; save the model again with torch.export.save")
    for fqn, payload in payloads.items():
        if not isinstance(payload, dict):
            raise AuditError(f"{path}: {name} entry {fqn!r} is not a table; save the model again with torch.export.save")
        file_name = str(payload.get("path_name", ""))
        if payload.get("use_pickle"):
            raise AuditError(f"{path}: {kind} {fqn!r} is stored as a pickle, and loading it runs code from the file; {TRUST_HINT}")
        if kind == "constant" and not file_name.startswith("tensor_"):
            raise AuditError(f"{path}: constant {fqn!r} is a pickled Python or TorchBind object ({file_name}), and loading it runs code; {TRUST_HINT}")
        if kind == "weight" and not file_name.startswith("weight_"):
            raise AuditError(f"{path}: weight {fqn!r} points at {file_name!r}, not a raw tensor file; {TRUST_HINT}")


def _check_tensors_only(path: Path, content: bytes, name: str) -> None:
    """torch retries a failed weights-only load with full pickle: make sure the safe load succeeds first."""
    import torch

    try:
        torch.load(io.BytesIO(content), weights_only=True, map_location="cpu")
    except Exception:  # noqa: BLE001 - anything beyond plain tensors is refused
        raise AuditError(f"{path}: {name} holds Python objects that only a full unpickle loads (it runs code); {TRUST_HINT}") from None


def _check_program(path: Path, content: bytes, name: str) -> None:
    program = _json(path, content, name)
    for node in _nodes(program):
        target = node.get("target")
        if not isinstance(target, str) or not _allowed_target(target):
            raise AuditError(f"{path}: graph node calls {str(target)[:80]!r}, which is not a PyTorch operator; {TRUST_HINT}")
    for expression in _values_of(program, "expr_str"):
        problem = _unsafe_expression(expression)
        if problem:
            raise AuditError(f"{path}: a symbolic shape holds {problem!r}, which is not a shape expression (it would run as Python); {TRUST_HINT}")


def _nodes(value):
    if isinstance(value, dict):
        if "target" in value and "inputs" in value and "outputs" in value:
            yield value
        for child in value.values():
            yield from _nodes(child)
    elif isinstance(value, list):
        for child in value:
            yield from _nodes(child)


def _values_of(value, key: str):
    if isinstance(value, dict):
        for k, child in value.items():
            if k == key:
                yield child
            else:
                yield from _values_of(child, key)
    elif isinstance(value, list):
        for child in value:
            yield from _values_of(child, key)


def _symbolic_operators() -> set:
    try:
        from torch._export.serde.serialize import _SYM_OPS

        return set(_SYM_OPS)
    except ImportError:  # a torch without the list: only operators proper
        return set()


def _allowed_target(target: str) -> bool:
    """An operator overload, a higher-order operator, or one of the symbolic-shape helpers; never any other callable."""
    import torch

    if "__" in target:
        return False
    if target.startswith("#"):  # an extension operator: only registered handlers resolve it
        return bool(re.fullmatch(r"#[A-Za-z0-9_]+:[A-Za-z0-9_.]+", target))
    if OP_TARGET.match(target):
        resolved = torch.ops
        try:
            for part in target.split(".")[2:]:
                resolved = getattr(resolved, part)
        except (AttributeError, RuntimeError):
            return False  # not a registered operator: torch could not run it either
        return isinstance(resolved, (torch._ops.OpOverload, torch._ops.HigherOrderOperator))
    qualified = {f"{getattr(op, '__module__', '')}.{getattr(op, '__name__', '')}" for op in _symbolic_operators()}
    return target in qualified


def _unsafe_expression(expression) -> str | None:
    """The first token of a symbolic-shape string that sympy would evaluate as more than arithmetic, or None."""
    if not isinstance(expression, str):
        return str(expression)[:40]
    if "__" in expression or len(expression) > 10_000:
        return expression[:40]
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(expression).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return expression[:40]
    for token in tokens:
        if token.type in (tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER, tokenize.NUMBER):
            continue
        if token.type == tokenize.NAME and (token.string in SYMPY_NAMES or SYMBOL_NAME.match(token.string)):
            continue
        if token.type == tokenize.STRING and re.fullmatch(r"""(['"])[A-Za-z][A-Za-z0-9_]*\1""", token.string):
            continue  # Symbol('s0', ...)
        if token.type == tokenize.OP and token.string in SAFE_OPERATORS:
            continue
        return token.string
    return None


@contextlib.contextmanager
def weights_only_loads():
    """Make every torch.load inside torch.export.load weights-only, so no fallback can unpickle (defence in depth)."""
    saved = {key: os.environ.get(key) for key in ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")}
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
