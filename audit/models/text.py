"""Text classifiers: token-id models (ONNX, TorchScript, torch.export) that take strings through their tokenizer."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from audit.errors import AuditError, first_line
from audit.models.base import LoadOptions, Model, is_out_of_memory

TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# First-argument names that say a torch module takes token ids.
_ID_NAMES = {"input_ids", "ids", "token_ids", "tokens"}
DEFAULT_MAX_LENGTH = 512


def tokenizer_for(model_path: Path, explicit: str | None, required: bool) -> Path | None:
    """The tokenizer file: --tokenizer, else MODEL.tokenizer.json, else tokenizer.json in the model's folder.

    The folder-wide ``tokenizer.json`` (the Hugging Face layout) is only used
    for a model that takes token ids, so a tokenizer lying beside other
    models never turns a float model into a text model.
    """
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise AuditError(f"--tokenizer {explicit}: no such file; give the model's tokenizer.json")
        return path
    own = model_path.with_name(model_path.stem + ".tokenizer.json")
    if own.is_file():
        return own
    shared = model_path.with_name("tokenizer.json")
    if required and shared.is_file():
        return shared
    return None


def read_tokenizer(path: Path):
    """A `tokenizers.Tokenizer` from a tokenizer.json (plain JSON: nothing in it is executed)."""
    try:
        from tokenizers import Tokenizer
    except ImportError:  # pragma: no cover - a declared dependency
        raise AuditError("text models need the `tokenizers` package: pip install tokenizers") from None
    try:
        return Tokenizer.from_file(str(path))
    except Exception as error:  # noqa: BLE001 - the Rust side raises plain Exceptions
        raise AuditError(f"{path}: not a readable Hugging Face tokenizer.json ({first_line(error, 160)}); "
                         "save it with tokenizer.save(path) from the `tokenizers` or `transformers` package") from None


def _refuse_without_tokenizer(path: Path, what: str) -> AuditError:
    return AuditError(
        f"{path}: {what} takes int64 token ids and no tokenizer was found; put the model's tokenizer.json beside it "
        f"({path.stem}.tokenizer.json or tokenizer.json) or pass --tokenizer PATH (token ids are never audited as numbers)"
    )


# -- detection and loading -----------------------------------------------------------
def load_onnx_text(path: Path, options: LoadOptions) -> "TextModel | None":
    """A TextModel if the ONNX graph takes token ids; None for any other graph; an error if its tokenizer is missing."""
    import onnx

    try:
        # Weights kept outside the graph file are not needed to read the inputs; a text model loads them below.
        proto = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - the ONNX loader reports unreadable files in its own words
        return None
    initializers = {i.name for i in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in initializers]
    integer = {onnx.TensorProto.INT64, onnx.TensorProto.INT32}
    int_inputs = [i.name for i in inputs if i.type.tensor_type.elem_type in integer]
    token_like = [n for n in int_inputs if n in TOKEN_INPUTS or "ids" in n.lower() or "token" in n.lower()]
    explicit = options.tokenizer
    found = tokenizer_for(path, explicit, required=bool(token_like))
    if not token_like and not (found and int_inputs):
        if explicit:
            raise AuditError(f"--tokenizer given, but {path} takes no integer token ids (inputs: {', '.join(i.name for i in inputs)})")
        return None
    if found is None:
        raise _refuse_without_tokenizer(path, f"input {token_like[0]!r} of the ONNX model")
    names = [i.name for i in inputs]
    unknown = [n for n in names if n not in TOKEN_INPUTS]
    if unknown and len(names) > 1:
        raise AuditError(f"{path}: a text model's inputs must be named {', '.join(TOKEN_INPUTS)}; found {', '.join(unknown)} "
                         "(re-export with those input names)")
    ids_name = "input_ids" if "input_ids" in names else names[0]
    fixed = None
    dims = inputs[names.index(ids_name)].type.tensor_type.shape.dim
    if len(dims) == 2 and dims[1].HasField("dim_value") and dims[1].dim_value > 0:
        fixed = int(dims[1].dim_value)
    if any(i.data_location == onnx.TensorProto.EXTERNAL for i in proto.graph.initializer):
        onnx.load_external_data_for_model(proto, str(path.parent))
    runner = OnnxTokenRunner(path, proto, options, ids_name, [n for n in names if n != ids_name])
    return TextModel(runner, read_tokenizer(found), found, path=path, options=options, fixed_length=fixed)


def torch_argument_names(module) -> list[str]:
    """Names of a torch module's forward arguments (TorchScript schema, or the Python signature)."""
    import inspect

    import torch

    if isinstance(module, torch.jit.ScriptModule):
        try:
            return [a.name for a in module.forward.schema.arguments[1:]]
        except Exception:  # noqa: BLE001
            return []
    try:
        return [p.name for p in inspect.signature(module.forward).parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return []


def wrap_torch_text(path: Path, torch_model, options: LoadOptions) -> "TextModel | None":
    """Turn a loaded TorchModel into a TextModel when it takes token ids; None when it does not."""
    arguments = torch_argument_names(torch_model.module)
    takes_ids = bool(arguments) and arguments[0] in _ID_NAMES
    found = tokenizer_for(path, options.tokenizer, required=takes_ids)
    if not takes_ids and found is None:
        return None
    if found is None:
        raise _refuse_without_tokenizer(path, f"the module's argument {arguments[0]!r}")
    runner = TorchTokenRunner(torch_model, arguments)
    return TextModel(runner, read_tokenizer(found), found, path=path, options=options, fixed_length=None)


class OnnxTokenRunner:
    """Runs padded token-id batches through an onnxruntime session."""

    format = "onnx"

    def __init__(self, path: Path, proto, options: LoadOptions, ids_name: str, other_inputs: list[str]):
        import onnxruntime as ort

        from audit.models.base import parse_device, threads_from_env
        from audit.models.onnx import _providers_for

        device = parse_device(options.device)
        providers, cuda_index = _providers_for(device)
        session_options = ort.SessionOptions()
        session_options.log_severity_level = 3
        threads = options.threads or threads_from_env("AUDIT_THREADS", "OMP_NUM_THREADS")
        if threads:
            session_options.intra_op_num_threads = threads
            session_options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(proto.SerializeToString(), sess_options=session_options, providers=providers)
        except Exception as error:  # noqa: BLE001
            raise AuditError(f"{path}: onnxruntime could not load the model ({first_line(error)})") from None
        in_use = self.session.get_providers()
        if cuda_index is not None and "CUDAExecutionProvider" not in in_use:
            if device != "auto":
                raise AuditError(f"--device {device}: onnxruntime could not start CUDA here; use --device cpu or auto")
            cuda_index = None
        self.provider = in_use[0]
        self.device = f"cuda:{cuda_index}" if cuda_index is not None else "cpu"
        self.ids_name = ids_name
        self.other_inputs = other_inputs
        outputs = [o for o in self.session.get_outputs() if o.type in ("tensor(float)", "tensor(double)", "tensor(float16)")]
        if not outputs:
            raise AuditError(f"{path}: the text model has no float output with class scores")
        preferred = [o for o in outputs if "logit" in o.name.lower() or "prob" in o.name.lower()] or outputs
        self.output_name = preferred[0].name
        self.inputs = [ids_name, *other_inputs]
        self.proto = proto
        self._session_options = session_options
        self._providers = in_use
        self._layer_session = None

    # -- a torch twin of the graph, for Integrated Gradients on its embedding table ------
    module = None  # set by torch_twin once the conversion matches onnxruntime
    twin_reason = "not converted yet"

    def torch_twin(self, ids: np.ndarray, mask: np.ndarray):
        """The graph converted to a torch module taking (input_ids, attention_mask, ...), checked against onnxruntime
        on these padded rows; None (and ``twin_reason``) when the conversion does not cover the graph or disagrees."""
        if self.twin_reason != "not converted yet":
            return self.module
        self.twin_reason = None
        try:
            import torch

            from audit.models.onnx_torch import UnsupportedGraph, convert
        except ImportError:
            self.twin_reason = "torch is not installed"
            return None
        try:
            module = convert(self.proto, self.inputs, self.output_name).to(self.device)
            expected = self(ids, mask, np.zeros_like(ids))
            with torch.inference_mode():
                got = module(*self.tensors(ids, mask, np.zeros_like(ids))).double().cpu().numpy().reshape(expected.shape)
        except UnsupportedGraph as error:
            self.twin_reason = f"the graph uses {error}, which the ONNX-to-torch conversion does not cover"
            return None
        except Exception as error:  # noqa: BLE001 - any failure means no IG, never a failed run
            self.twin_reason = f"the converted graph did not run ({type(error).__name__}: {first_line(error, 120)})"
            return None
        difference = float(np.max(np.abs(got - expected)))
        if not difference <= 1e-4 * max(1.0, float(np.max(np.abs(expected)))):
            self.twin_reason = f"the converted graph disagrees with onnxruntime by {difference:.2g}"
            return None
        self.module = module.eval()
        return self.module

    def tensors(self, ids, mask, type_ids):
        """The graph's inputs as torch tensors on the device, in the converted module's argument order."""
        import torch

        return [torch.as_tensor(value, device=self.device) for value in self._feeds(ids, mask, type_ids).values()]

    def _feeds(self, ids, mask, type_ids) -> dict:
        feeds = {self.ids_name: ids}
        for name in self.other_inputs:
            feeds[name] = mask if name == "attention_mask" else type_ids
        return feeds

    def layers(self) -> list[str]:
        from audit.models.onnx import hidden_layers

        return hidden_layers(self.proto)

    def run_layers(self, ids, mask, type_ids, layers: list[str]) -> list[np.ndarray]:
        """The named intermediate values for one padded batch, from a second session that outputs them too."""
        from audit.models.onnx import session_with_outputs

        if self._layer_session is None or self._layer_session[0] != tuple(layers):
            session = session_with_outputs(self.proto, layers, self._session_options, self._providers)
            self._layer_session = (tuple(layers), session)
        return [np.asarray(v, dtype=np.float32) for v in self._layer_session[1].run(list(layers), self._feeds(ids, mask, type_ids))]

    def __call__(self, ids: np.ndarray, mask: np.ndarray, type_ids: np.ndarray) -> np.ndarray:
        (out,) = self.session.run([self.output_name], self._feeds(ids, mask, type_ids))
        return np.asarray(out).reshape(len(ids), -1)

    def release_memory(self) -> None:
        pass


class TorchTokenRunner:
    """Runs padded token-id batches through a torch module (positional input_ids[, attention_mask[, token_type_ids]])."""

    def __init__(self, torch_model, arguments: list[str]):
        self.torch_model = torch_model
        self.module = torch_model.module
        self.format = torch_model.format
        self.provider = torch_model.provider
        self.device = torch_model.device
        self.inputs = list(arguments[:3]) or ["input_ids"]
        self.n_inputs = max(1, min(3, len(arguments)))

    def tensors(self, ids, mask, type_ids):
        import torch

        values = (ids, mask, type_ids)[: self.n_inputs]
        return [torch.as_tensor(v, device=self.device) for v in values]

    def __call__(self, ids: np.ndarray, mask: np.ndarray, type_ids: np.ndarray) -> np.ndarray:
        import torch

        from audit.models.base import first_output

        with torch.inference_mode():
            out = first_output(self.module(*self.tensors(ids, mask, type_ids)))
        return out.float().cpu().numpy().reshape(len(ids), -1)

    def release_memory(self) -> None:
        self.torch_model._release_memory()

    def layers(self) -> list[str]:
        return self.torch_model.layers() if self.torch_model._supports_hooks() else []

    def run_layers(self, ids, mask, type_ids, layers: list[str]) -> list[np.ndarray]:
        import torch

        modules = dict(self.module.named_modules())
        captured: dict[str, np.ndarray] = {}
        handles = []
        for layer in layers:
            def hook(_module, _inputs, output, layer=layer):
                out = output[0] if isinstance(output, (tuple, list)) else output
                captured[layer] = out.detach().float().cpu().numpy()

            handles.append(modules[layer].register_forward_hook(hook))
        try:
            with torch.inference_mode():
                self.module(*self.tensors(ids, mask, type_ids))
        finally:
            for handle in handles:
                handle.remove()
        return [captured[layer] for layer in layers]


# -- the model ------------------------------------------------------------------------
class TextModel(Model):
    """A classifier over strings: tokenize in batches, pad per length-sorted batch, run the token-id model.

    ``x`` is a 1-D array of strings. Text analyses also use the token level:
    ``encode`` (ids and which of them are special tokens, truncated at
    ``max_length``) and ``predict_ids`` (any id sequences, e.g. with tokens
    removed or replaced), so perturbations never go through the numbers as
    continuous values.
    """

    modality = "text"

    def __init__(self, runner, tokenizer, tokenizer_path: Path, *, path: Path, options: LoadOptions, fixed_length: int | None):
        self.runner = runner
        self.format = f"{runner.format}+tokenizer"
        self.provider = runner.provider
        self.tokenizer_path = Path(tokenizer_path)
        truncation = tokenizer.truncation or {}
        if fixed_length:
            max_length, source = fixed_length, "the model's fixed input length"
        elif truncation.get("max_length"):
            max_length, source = int(truncation["max_length"]), "the tokenizer's truncation setting"
        else:
            max_length, source = DEFAULT_MAX_LENGTH, f"default ({DEFAULT_MAX_LENGTH}): neither the tokenizer nor the model declares one"
        self.max_length, self.max_length_source = int(max_length), source
        self.pad_id = self._pad_id(tokenizer)  # before padding is turned off: its settings name the pad token
        tokenizer.no_padding()  # batches are padded here, after sorting by length
        tokenizer.enable_truncation(self.max_length)
        self.tokenizer = tokenizer
        self.fixed_length = fixed_length
        vocab = tokenizer.get_vocab()
        self.vocab_size = tokenizer.get_vocab_size()
        # The id that stands for "no token here" in occlusion and IG baselines.
        self.baseline_token, self.baseline_id = next(
            ((t, vocab[t]) for t in ("[MASK]", "<mask>", "[UNK]", "<unk>", "[PAD]", "<pad>") if t in vocab),
            (None, self.pad_id))
        # Text is sent in large batches: a row costs max_length tokens at most.
        super().__init__(path=path, input_shape=(), n_classes=None, device=runner.device, batch_size=options.batch_size or 256,
                         output=options.output, input_dtype=object)
        self.gradient_reason = "token ids are discrete: input-gradient analyses (white-box attacks) do not apply to text"
        self._embedding = None
        self._embedding_checked = False

    @staticmethod
    def _pad_id(tokenizer) -> int:
        padding = tokenizer.padding or {}
        if padding.get("pad_id") is not None:
            return int(padding["pad_id"])
        vocab = tokenizer.get_vocab()
        for token in ("[PAD]", "<pad>", "<|pad|>"):
            if token in vocab:
                return int(vocab[token])
        return 0

    @property
    def capabilities(self) -> frozenset[str]:
        caps = {"predict", "text"}
        if self.layers():
            caps.add("activations")
        if self.embedding_parameter() is not None:
            caps.add("token_gradients")
        return frozenset(caps)

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update({
            "modality": "text",
            "tokenizer": str(self.tokenizer_path),
            "vocab_size": self.vocab_size,
            "max_length": self.max_length,
            "max_length_source": self.max_length_source,
            "pad_id": self.pad_id,
            "inputs": list(self.runner.inputs),
            "token_gradients": ("embedding output (IG)" + (" of the graph's torch conversion, checked against onnxruntime"
                                                            if hasattr(self.runner, "torch_twin") else "")
                                if self.embedding_parameter() is not None else self.token_gradient_reason()),
        })
        return info

    # -- tokens ---------------------------------------------------------------------
    def encode(self, texts) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Token ids of each string (truncated at max_length) and a mask of its special tokens, in one batched call."""
        encodings = self.tokenizer.encode_batch([str(t) for t in texts])
        ids = [np.asarray(e.ids, dtype=np.int64) for e in encodings]
        special = [np.asarray(e.special_tokens_mask, dtype=bool) for e in encodings]
        return ids, special

    def unknown_words(self, words) -> list[str]:
        """The words this tokenizer reads as its unknown token (a word-level vocabulary without them)."""
        vocab = self.tokenizer.get_vocab()
        unk = next((vocab[t] for t in ("[UNK]", "<unk>", "<|unk|>") if t in vocab), None)
        if unk is None:
            return []
        ids, special = self.encode(list(words))
        return [w for w, i, s in zip(words, ids, special) if np.any(i[~s] == unk)]

    def tokens(self, ids: np.ndarray) -> list[str]:
        return [self.tokenizer.id_to_token(int(i)) or "?" for i in ids]

    def pad(self, sequences: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(ids, attention mask), padded to the longest sequence (or the model's fixed length)."""
        width = self.fixed_length or max(1, max(len(s) for s in sequences))
        ids = np.full((len(sequences), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(sequences), width), dtype=np.int64)
        for row, seq in enumerate(sequences):
            seq = seq[:width]
            ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1
        return ids, mask

    def raw_ids(self, sequences: list[np.ndarray]) -> np.ndarray:
        """The model's outputs for token-id sequences: sorted by length so each batch pads little; counted, OOM-safe."""
        if len(sequences) == 0:
            raise AuditError("no rows to predict: the data set is empty")
        start = time.perf_counter()
        lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
        order = np.argsort(lengths, kind="stable")
        chunks = []
        i = 0
        while i < len(order):
            index = order[i : i + self.batch_size]
            ids, mask = self.pad([sequences[j] for j in index])
            try:
                out = self.runner(ids, mask, np.zeros_like(ids))
            except Exception as error:  # noqa: BLE001 - retried only for out-of-memory
                if is_out_of_memory(error) and self.batch_size > 1:
                    self.runner.release_memory()
                    self.batch_size = max(1, self.batch_size // 2)
                    self.warn(f"out of memory; batch size halved to {self.batch_size}")
                    continue
                raise
            chunks.append((index, np.asarray(out, dtype=np.float64)))
            i += len(index)
        width = chunks[0][1].shape[1]
        raw = np.empty((len(sequences), width), dtype=np.float64)
        for index, out in chunks:
            raw[index] = out
        self.counters.forward_rows += len(sequences)
        self.counters.forward_seconds += time.perf_counter() - start
        self._settle_output_kind(raw)
        return raw

    def predict_ids(self, sequences: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities, logits) for token-id sequences."""
        from audit.models.base import normalise_outputs

        return normalise_outputs(self.raw_ids(sequences), self.output_kind)

    def raw_outputs(self, x) -> np.ndarray:
        texts = np.asarray(x, dtype=object).reshape(-1)
        if len(texts) == 0:
            raise AuditError("no rows to predict: the data set is empty")
        start = time.perf_counter()
        ids, _ = self.encode(texts)
        # Tokenizing is part of the model's cost: count its seconds with the forward pass.
        self.counters.forward_seconds += time.perf_counter() - start
        return self.raw_ids(ids)

    def fit_batch_size(self, row_shape: tuple) -> None:
        self.row_shape = tuple(row_shape)

    # -- hidden states ----------------------------------------------------------------
    def layers(self) -> list[str]:
        return self.runner.layers()

    def activations(self, x, layers: list[str]) -> dict[str, np.ndarray]:
        """Hidden states per text, pooled over tokens: a (batch, tokens, ...) value is averaged over the attention mask.

        Texts have different lengths, so a token axis cannot be kept; the
        pooled state is what the probes of ``bias.leakage`` read.
        """
        known = self.layers()
        missing = [layer for layer in layers if layer not in known]
        if missing:
            raise AuditError(f"unknown layer(s) {', '.join(missing)}; layers are: {', '.join(known)}")
        sequences, _ = self.encode(np.asarray(x, dtype=object).reshape(-1))
        order = np.argsort([len(s) for s in sequences], kind="stable")
        parts: dict[str, list] = {layer: [] for layer in layers}
        for i in range(0, len(order), self.batch_size):
            index = order[i : i + self.batch_size]
            ids, mask = self.pad([sequences[j] for j in index])
            for layer, value in zip(layers, self.runner.run_layers(ids, mask, np.zeros_like(ids), layers)):
                if value.ndim >= 3 and value.shape[1] == ids.shape[1]:
                    weights = mask.astype(np.float32).reshape(mask.shape + (1,) * (value.ndim - 2))
                    value = (value * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1.0)
                parts[layer].append((index, value.reshape(len(index), -1)))
            self.counters.forward_rows += len(index)
        result = {}
        for layer, chunks in parts.items():
            widths = {v.shape[1] for _, v in chunks}
            if len(widths) != 1:
                raise AuditError(f"layer {layer}: its size changes with the text length, so it cannot be pooled into one vector per text")
            out = np.empty((len(sequences), widths.pop()), dtype=np.float32)
            for index, value in chunks:
                out[index] = value
            result[layer] = out
        return result

    # -- Integrated Gradients on the embedding output (torch models) -----------------
    def embedding_parameter(self) -> str | None:
        """Name of the token embedding table (the 2-D parameter with one row per vocabulary entry), or None.

        It is used only after checking that looking the tokens up in an
        extended copy of the table gives the module's own outputs, so a model
        whose embedding is not a plain lookup gets no IG rather than a wrong one.
        """
        if self._embedding_checked:
            return self._embedding
        self._embedding_checked = True
        module = getattr(self.runner, "module", None)
        if module is None and hasattr(self.runner, "torch_twin"):
            # An ONNX graph: its torch conversion (checked against onnxruntime) holds the table as a constant.
            ids, _ = self.encode(["a check sentence", "another one"])
            module = self.runner.torch_twin(*self.pad(ids))
        if module is None:
            return None
        for name, parameter in [*module.named_parameters(), *module.named_buffers()]:
            if parameter.dim() == 2 and parameter.shape[0] == self.vocab_size and parameter.is_floating_point():
                self._embedding = name
                break
        if self._embedding is not None and not self._lookup_checks():
            self._embedding = None
        return self._embedding

    def token_gradient_reason(self) -> str:
        """Why this model has no Integrated Gradients on its embeddings."""
        reason = getattr(self.runner, "twin_reason", None)
        if reason:
            return f"none: the ONNX graph has no torch twin ({reason})"
        return ("none: Integrated Gradients needs an embedding table that is a plain lookup (TorchScript, torch.export, "
                "or an ONNX graph the torch conversion covers)")

    def _table(self):
        # ScriptModules have no get_parameter; named_parameters works on every module (an ONNX twin's table is a buffer).
        module = self.runner.module
        return {**dict(module.named_buffers()), **dict(module.named_parameters())}[self._embedding]

    def _lookup_checks(self) -> bool:
        ids, _ = self.encode(["a check sentence", "another one"])
        try:
            import torch

            with torch.inference_mode():
                expected = self._logits_from_rows(ids, None)
                table = self._table()
                width = max(len(s) for s in ids)
                rows = torch.stack([table[torch.as_tensor(self.pad([s])[0][0].tolist() + [self.pad_id] * (width - len(s)))]
                                    for s in ids])
                got = self._logits_from_rows(ids, rows)
            return bool(torch.allclose(expected, got, atol=1e-5, rtol=1e-5))
        except Exception:  # noqa: BLE001 - any failure means no IG, never a failed run
            return False

    def _logits_from_rows(self, sequences, rows):
        """Logits with every token position looked up in its own appended row of the embedding table.

        ``rows`` (batch, width, dim) are the embedding outputs to use (None: the
        plain ids). TorchScript modules take the extended table as an attribute
        (restored after); other modules through ``torch.func.functional_call``.
        Either way autograd reaches ``rows``.
        """
        import torch

        from audit.models.base import first_output, torch_logits

        module = self.runner.module
        ids, mask = self.pad(sequences)
        tensors = self.runner.tensors(ids, mask, np.zeros_like(ids))
        if rows is None:
            out = first_output(module(*tensors))
            return torch_logits(out.float(), self.output_kind)
        table = self._table()
        n = ids.size
        extended = torch.cat([table.detach(), rows.reshape(n, -1).to(table.dtype)], dim=0)
        tensors[0] = (table.shape[0] + torch.arange(n, device=self.device)).reshape(ids.shape)
        if isinstance(module, torch.jit.ScriptModule):
            owner_name, _, attribute = self._embedding.rpartition(".")
            owner = dict(module.named_modules())[owner_name] if owner_name else module
            try:
                setattr(owner, attribute, extended)
                out = first_output(module(*tensors))
            finally:
                setattr(owner, attribute, table)
        else:
            from torch.func import functional_call

            out = first_output(functional_call(module, {self._embedding: extended}, tuple(tensors)))
        return torch_logits(out.float(), self.output_kind)

    def embedding_gradients(self, sequences: list[np.ndarray], baseline_sequences: list[np.ndarray], targets: np.ndarray,
                            alphas: np.ndarray, weights: np.ndarray, score: str = "logit") -> list[np.ndarray]:
        """Integrated Gradients per token: sum over embedding dims of (e - e0) * sum_k w_k grad at e0 + a_k (e - e0).

        Every (row, path point) is one row of a batch; each token position of
        each row at each point gets its own appended embedding row, so the
        gradient of that row is the gradient at the embedding output there.
        Sequences and their baselines must have equal lengths.
        """
        import torch

        if self.embedding_parameter() is None:
            raise AuditError(f"{self.path}: no embedding table to integrate over; Integrated Gradients needs a TorchScript "
                             "or torch.export text model whose token embedding is a plain lookup")
        table = self._table().detach()
        results = []
        per_call = max(1, self.batch_size // max(1, len(alphas)))
        start = time.perf_counter()
        for r0 in range(0, len(sequences), per_call):
            rows = list(range(r0, min(len(sequences), r0 + per_call)))
            batch_sequences, path_rows, deltas = [], [], []
            for r in rows:
                ids = torch.as_tensor(sequences[r], device=self.device)
                base = torch.as_tensor(baseline_sequences[r], device=self.device)
                e, e0 = table[ids], table[base]
                deltas.append(e - e0)
                for a in alphas:
                    batch_sequences.append(sequences[r])
                    path_rows.append(e0 + float(a) * (e - e0))
            ids_pad, _ = self.pad(batch_sequences)
            width = ids_pad.shape[1]
            dim = table.shape[1]
            padded = torch.zeros((len(batch_sequences), width, dim), dtype=table.dtype, device=self.device)
            for i, rows_i in enumerate(path_rows):
                padded[i, : len(rows_i)] = rows_i
                padded[i, len(rows_i):] = table[self.pad_id]
            padded.requires_grad_(True)
            target = torch.as_tensor(np.repeat(np.asarray(targets)[rows], len(alphas)), device=self.device)
            with torch.enable_grad():
                logits = self._logits_from_rows(batch_sequences, padded)
                if score == "probability":
                    picked = torch.softmax(logits, dim=1).gather(1, target.view(-1, 1)).sum()
                else:
                    picked = logits.gather(1, target.view(-1, 1)).sum()
                (grad,) = torch.autograd.grad(picked, padded)
            w = torch.as_tensor(weights, dtype=grad.dtype, device=self.device)
            for j, r in enumerate(rows):
                n = len(sequences[r])
                g = grad[j * len(alphas) : (j + 1) * len(alphas), :n]
                integrated = (w.view(-1, 1, 1) * g).sum(0)
                results.append((integrated * deltas[j]).sum(-1).double().cpu().numpy())
            self.counters.forward_rows += len(batch_sequences)
            self.counters.backward_rows += len(batch_sequences)
        self.counters.backward_seconds += time.perf_counter() - start
        return results
