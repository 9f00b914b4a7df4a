"""Losses whose gradients are compared: data sets + a loss kind (:class:`LossSpec`), an
unlearning objective on forget data, or any callable ``(model) -> scalar``.

Loss kinds (all completion-only, token-mean over the *whole* data set — the data set is run
in micro-batches of ``batch_size`` and each batch's summed loss is divided by the data
set's token count, so the gradient is that of one big batch):

* ``ce``: cross-entropy of the records' responses
  (:func:`~safetygeo.activations.losses.completion_ce`), e.g. benign (prompt, answer) pairs;
* ``refusal_ce``: cross-entropy of a refusal (``refusal``, default the same text as
  :data:`safetygeo.training.methods.sft.DEFAULT_REFUSAL`) after each prompt — responses in
  the data are ignored: the loss a refusal-SFT defense minimises on harmful prompts;
* ``harmful_ce``: cross-entropy of harmful *compliant* responses (the data's responses /
  a PromptSet's ``targets``, which must be present) — the loss a harmful fine-tuning
  attacker minimises.

A :class:`LossSpec` is a frozen, hashable settings object; :meth:`LossSpec.describe` (kind,
size, SHA-256 of the records, lengths) goes into result metadata.

Example:
    >>> spec = LossSpec.from_data(["Make a bomb."], "refusal_ce", name="harmful")
    >>> spec.records[0], spec.describe()["n"]
    (('Make a bomb.', 'I cannot help with that request.', None), 1)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from safetygeo.activations.logits import pad_id_of
from safetygeo.activations.losses import completion_logprobs
from safetygeo.data.records import (
    IGNORE_INDEX,
    as_records,
    encode_completions,
    pad_right,
    records_sha256,
)
from safetygeo.errors import DatasetFormatError, NonFiniteError, SafetyGeoError, SettingsError
from safetygeo.gradients.objectives import UnlearningObjective, objective_sum
from safetygeo.models.handle import ModelHandle

LossKind = Literal["ce", "refusal_ce", "harmful_ce"]
LOSS_KINDS: tuple[str, ...] = ("ce", "refusal_ce", "harmful_ce")
#: Refusal text of ``refusal_ce`` (kept equal to the refusal-SFT default; a test checks it).
DEFAULT_REFUSAL = "I cannot help with that request."
LossFn = Callable[[nn.Module], Tensor]

__all__ = ["DEFAULT_REFUSAL", "LOSS_KINDS", "LossFn", "LossKind", "LossSpec", "ReferenceLogprobs",
           "reference_logprobs"]


@dataclass(frozen=True)
class LossSpec:
    """A completion loss over a data set (see the module docstring).

    Attributes:
        records: ``(prompt, response, prefill)`` triples (``prefill`` ``None`` or text the
            reply starts with, masked from the loss).
        kind: ``ce``, ``refusal_ce`` or ``harmful_ce`` (a label; the arithmetic is the same
            completion CE, the kinds differ in where responses come from).
        name: label in tables (default: the kind).
        max_length: longest prompt + completion in tokens.
        batch_size: examples per forward / backward pass.
    """

    records: tuple[tuple[str, str, str | None], ...]
    kind: str = "ce"
    name: str | None = None
    max_length: int = 512
    batch_size: int = 16

    def __post_init__(self) -> None:
        if self.kind not in LOSS_KINDS:
            raise SettingsError(f"unknown loss kind {self.kind!r}; choose from {LOSS_KINDS}")
        recs = tuple(tuple(r) if len(r) == 3 else (*tuple(r), None) for r in self.records)
        if not recs:
            raise DatasetFormatError(f"loss {self.label!r} has no examples")
        for i, r in enumerate(recs):
            if len(r) != 3 or not all(isinstance(x, str) for x in r[:2]):
                raise DatasetFormatError(f"loss {self.label!r}, item {i}: expected "
                                         f"(prompt, response[, prefill]) strings, got {r!r}")
        object.__setattr__(self, "records", recs)
        for field, v in (("max_length", self.max_length), ("batch_size", self.batch_size)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise SettingsError(f"loss {self.label!r}: {field} must be a positive int, got {v!r}")

    @classmethod
    def from_data(cls, data: Any, kind: str = "ce", *, name: str | None = None,
                  refusal: str | None = None, max_length: int = 512,
                  batch_size: int = 16) -> LossSpec:
        """Build a spec from anything :func:`~safetygeo.data.records.as_records` takes (a
        PromptSet — its ``targets`` are the responses —, a JSON / JSONL path, prompts,
        ``(prompt, response)`` pairs or mappings).

        Raises:
            SettingsError: unknown kind, or ``refusal`` given for another kind.
            DatasetFormatError / EmptyDatasetError: ``ce`` / ``harmful_ce`` data without
                responses (the message names the item), no examples.
        """
        if kind not in LOSS_KINDS:
            raise SettingsError(f"unknown loss kind {kind!r}; choose from {LOSS_KINDS}")
        role = name or kind
        if kind == "refusal_ce":
            text = DEFAULT_REFUSAL if refusal is None else refusal
            if not isinstance(text, str) or not text.strip():
                raise SettingsError(f"loss {role!r}: the refusal must be non-blank text")
            recs = as_records(data, role=role, default_response=text, use_targets=False)
            recs = [{**r, "response": text} for r in recs]
        else:
            if refusal is not None:
                raise SettingsError(f"loss {role!r}: refusal= only applies to kind 'refusal_ce'")
            try:
                recs = as_records(data, role=role)
            except DatasetFormatError as exc:
                what = "harmful compliant responses (targets)" if kind == "harmful_ce" else "responses"
                raise DatasetFormatError(f"{exc} — loss kind {kind!r} needs {what}") from None
        return cls(tuple((r["prompt"], r["response"], r.get("prefill")) for r in recs), kind,
                   name, max_length, batch_size)

    @property
    def label(self) -> str:
        return self.name or self.kind

    def as_dicts(self) -> list[dict[str, str]]:
        """The records as ``{"prompt", "response"[, "prefill"]}`` dicts."""
        return [{"prompt": p, "response": r, **({"prefill": f} if f else {})}
                for p, r, f in self.records]

    def describe(self) -> dict[str, Any]:
        """``{name, kind, n, sha256, max_length, batch_size}`` (JSON-ready)."""
        return {"name": self.label, "kind": self.kind, "n": len(self.records),
                "sha256": records_sha256(self.as_dicts()), "max_length": self.max_length,
                "batch_size": self.batch_size}

    def batches(self, handle: ModelHandle) -> tuple[list[dict[str, Tensor]], int, int]:
        """Tokenized micro-batches on the model's device, the number of completion tokens
        and of examples with at least one completion token."""
        rows = encode_completions(handle, self.as_dicts(), max_length=self.max_length, role=self.label)
        pad = pad_id_of(handle)
        out = []
        for i in range(0, len(rows), self.batch_size):
            b = pad_right(rows[i:i + self.batch_size], pad)
            out.append({k: v.to(handle.device) for k, v in b.items()})
        n_tok = sum(int((b["labels"][:, 1:] != IGNORE_INDEX).sum()) for b in out)
        n_seq = sum(int((b["labels"][:, 1:] != IGNORE_INDEX).any(-1).sum()) for b in out)
        return out, n_tok, n_seq


# ----------------------------------------------------------------------------- references
@dataclass(frozen=True)
class ReferenceLogprobs:
    """The reference model's completion-token log-probs of a forget set, for NPO / TNPO.

    Attributes:
        per_batch: ``[batch, seq-1]`` float32 log-probs per micro-batch of ``spec`` (0 off
            the completion mask), on the CPU.
        spec_sha256: SHA-256 of the records they belong to.
        source: what the reference is (``"self"``, a model id, ``"step-0"`` ...).
    """

    per_batch: tuple[Tensor, ...]
    spec_sha256: str
    source: str

    def check(self, spec: LossSpec, batches: Sequence[Mapping[str, Tensor]]) -> None:
        """Refuse log-probs of other records or another tokenization."""
        if spec.describe()["sha256"] != self.spec_sha256:
            raise SettingsError(f"reference log-probs ({self.source}) belong to other records "
                                f"than the forget set {spec.label!r}")
        shapes = [tuple(b["labels"][:, 1:].shape) for b in batches]
        if shapes != [tuple(t.shape) for t in self.per_batch]:
            raise SettingsError(f"reference log-probs ({self.source}) were tokenized differently "
                                f"from the forget set {spec.label!r} (batch shapes differ)")


@torch.no_grad()
def reference_logprobs(handle: ModelHandle, spec: LossSpec, *, source: str | None = None
                       ) -> ReferenceLogprobs:
    """Completion-token log-probs of ``spec`` under ``handle`` (the reference model of NPO /
    TNPO: the model before unlearning), computed in eval mode.

    Example:
        >>> from safetygeo.models import load_model
        >>> from safetygeo.models.tiny import tiny_model_and_tokenizer
        >>> h = load_model(tiny_model_and_tokenizer("llama", n_layers=1, d_model=16))
        >>> ref = reference_logprobs(h, LossSpec.from_data([("Hi", "Hello there")]))
        >>> len(ref.per_batch), bool((ref.per_batch[0] <= 0).all())
        (1, True)
    """
    batches, _, _ = spec.batches(handle)
    model = handle.model
    was = model.training
    model.eval()
    try:
        out = tuple(completion_logprobs(model, b)[0].float().cpu() for b in batches)
    finally:
        model.train(was)
    return ReferenceLogprobs(out, spec.describe()["sha256"], source or handle.model_id)


# ----------------------------------------------------------------------------- prepared
class PreparedLoss:
    """A loss ready to run: ``backward(model)`` runs forward + backward over every
    micro-batch (gradients accumulate in ``.grad``) and returns the loss value."""

    label: str = "loss"

    def backward(self, model: nn.Module) -> float:  # pragma: no cover - interface
        raise NotImplementedError

    def _check(self, value: Tensor) -> None:
        if not torch.isfinite(value).all():
            raise NonFiniteError(f"loss {self.label!r} is {float(value)} (not finite)")


class RecordsLoss(PreparedLoss):
    """Token-mean completion CE of a :class:`LossSpec` over its whole data set."""

    def __init__(self, handle: ModelHandle, spec: LossSpec) -> None:
        self.spec, self.label = spec, spec.label
        self.batches, self.n_tok, _ = spec.batches(handle)
        if self.n_tok == 0:
            raise DatasetFormatError(f"loss {spec.label!r} has no completion tokens")

    def backward(self, model: nn.Module) -> float:
        total = 0.0
        for b in self.batches:
            logp, _ = completion_logprobs(model, b)
            loss = -logp.sum() / self.n_tok
            self._check(loss)
            loss.backward()
            total += float(loss.detach())
        return total


class ObjectiveLoss(PreparedLoss):
    """An unlearning objective on a forget :class:`LossSpec` (normalised over the set)."""

    def __init__(self, handle: ModelHandle, objective: UnlearningObjective, forget: LossSpec,
                 reference: ReferenceLogprobs | None) -> None:
        self.objective, self.label = objective, objective.label
        self.batches, n_tok, n_seq = forget.batches(handle)
        self.norm = n_seq if objective.per_sequence else n_tok
        if n_tok == 0:
            raise DatasetFormatError(f"forget set {forget.label!r} has no completion tokens")
        self.reference = reference
        if objective.needs_reference:
            if reference is None:
                raise SettingsError(f"objective {objective.name!r} needs reference log-probs")
            reference.check(forget, self.batches)

    def backward(self, model: nn.Module) -> float:
        total = 0.0
        for i, b in enumerate(self.batches):
            logp, mask = completion_logprobs(model, b)
            ref = None
            if self.reference is not None:
                ref = self.reference.per_batch[i].to(logp.device)
            loss = objective_sum(self.objective, logp, mask, ref) / self.norm
            self._check(loss)
            loss.backward()
            total += float(loss.detach())
        return total


class CallableLoss(PreparedLoss):
    """A user callable ``(model) -> scalar tensor``."""

    def __init__(self, fn: LossFn, label: str | None = None) -> None:
        self.fn = fn
        self.label: str = label or str(getattr(fn, "__name__", type(fn).__name__))

    def backward(self, model: nn.Module) -> float:
        loss = self.fn(model)
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            raise SafetyGeoError(f"loss callable {self.label!r} must return a scalar tensor, got "
                                 f"{type(loss).__name__}{'' if not isinstance(loss, Tensor) else tuple(loss.shape)}")
        loss = loss.reshape(())
        self._check(loss.detach())
        if not loss.requires_grad:
            raise SafetyGeoError(f"loss callable {self.label!r} returned a tensor without a graph "
                                 "(computed under no_grad, or independent of every trainable parameter)")
        loss.backward()
        return float(loss.detach())


def prepare_loss(handle: ModelHandle, loss: LossSpec | LossFn | PreparedLoss,
                 label: str | None = None) -> PreparedLoss:
    """A :class:`LossSpec`, a callable or an already prepared loss → a :class:`PreparedLoss`."""
    if isinstance(loss, PreparedLoss):
        return loss
    if isinstance(loss, LossSpec):
        return RecordsLoss(handle, loss)
    if callable(loss):
        return CallableLoss(loss, label)
    raise SettingsError(f"a loss must be a LossSpec or a callable (model) -> scalar, got "
                        f"{type(loss).__name__}")

