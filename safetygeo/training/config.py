"""Training hyper-parameters: :class:`TrainConfig` and its optional :class:`LoraSpec`.

Both are plain dataclasses recorded verbatim in a trajectory's manifest. ``from_dict``
rejects unknown keys (naming them), so a typo in a config file is an error, not a silently
ignored setting. Every field maps onto one ``transformers.TrainingArguments`` field (see
:meth:`TrainConfig.training_arguments`); nothing here re-implements what the trainer does.

Example:
    >>> cfg = TrainConfig.from_dict({"lr": 1e-4, "max_steps": 20, "lora": {"r": 4}})
    >>> cfg.lora.r, cfg.lora.target_modules, cfg.save_every
    (4, 'all-linear', 50)
    >>> TrainConfig.from_dict({"learning_rate": 1e-4})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    safetygeo.training.errors.TrainConfigError: unknown TrainConfig key(s) ['learning_rate']; known: ['batch_size', ...]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from safetygeo.training.errors import TrainConfigError

#: Accepted ``TrainConfig.dtype`` names.
DTYPE_NAMES: tuple[str, ...] = ("float32", "fp32", "bfloat16", "bf16", "float16", "fp16")

#: TrainConfig fields that may change between a run and its resumption (they do not
#: change what is computed, only how often it is logged or saved).
OPERATIONAL_KEYS: tuple[str, ...] = ("save_every", "log_every")


def _from_dict(cls: type, values: Mapping[str, Any], what: str) -> Any:
    if not isinstance(values, Mapping):
        raise TrainConfigError(f"{what} must be a mapping, got {type(values).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise TrainConfigError(f"unknown {what} key(s) {unknown}; known: {sorted(names)}")
    return cls(**values)


@dataclass(frozen=True)
class LoraSpec:
    """A LoRA adapter (Hu et al. 2021) as peft builds it.

    Attributes:
        r: adapter rank.
        alpha: scaling numerator (the update is ``alpha / r · B A``).
        dropout: dropout on the adapter input.
        target_modules: module names (matched like peft: the full name or its last
            ``.``-separated parts), a peft regex string, or ``"all-linear"`` (every Linear /
            GPT-2 Conv1D layer except the LM head).
    """

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: str | tuple[str, ...] = "all-linear"

    def __post_init__(self) -> None:
        if not isinstance(self.r, int) or self.r < 1:
            raise TrainConfigError(f"lora.r must be a positive int, got {self.r!r}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise TrainConfigError(f"lora.dropout must be in [0, 1), got {self.dropout!r}")
        tm = self.target_modules
        if not isinstance(tm, str):
            tm = tuple(tm)
            if not tm or not all(isinstance(t, str) and t for t in tm):
                raise TrainConfigError(
                    f"lora.target_modules must be a non-empty list of names, got {self.target_modules!r}"
                )
            object.__setattr__(self, "target_modules", tm)
        elif not tm:
            raise TrainConfigError("lora.target_modules must not be empty")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> LoraSpec:
        """Build from a mapping (config files), rejecting unknown keys."""
        return _from_dict(cls, values, "lora")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if not isinstance(self.target_modules, str):
            d["target_modules"] = list(self.target_modules)
        return d


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and checkpointing settings of one training run.

    Attributes:
        lr: peak learning rate (AdamW).
        max_steps: optimizer steps; ``None`` to train for ``epochs`` instead.
        epochs: passes over the method's training examples (used when ``max_steps`` is None).
        batch_size: examples per micro-batch (per device).
        grad_accum: micro-batches per optimizer step.
        save_every: write a checkpoint every this many optimizer steps (the last step is
            always saved).
        seed: seeds the data order, dropout, LoRA init and any method randomness.
        warmup_steps: linear warm-up steps.
        weight_decay: AdamW weight decay.
        lr_scheduler: a ``transformers`` scheduler name (``linear``, ``cosine``, ``constant``...).
        max_grad_norm: gradient clipping (0 disables).
        max_length: longest training sequence in tokens (prompt + completion); longer
            completions are truncated, an over-long prompt is an error.
        lora: ``None`` for a full fine-tune, else the adapter to train.
        dtype: dtype to cast the model's weights to before training (``None`` keeps them).
        bf16, fp16: mixed-precision autocast through the trainer (GPU; bf16 also on CPU).
        gradient_checkpointing: trade compute for activation memory (large models).
        optim: a ``transformers`` optimizer name.
        log_every: log the loss and method metrics every this many steps.
    """

    lr: float = 1e-5
    max_steps: int | None = 100
    epochs: float | None = None
    batch_size: int = 4
    grad_accum: int = 1
    save_every: int = 50
    seed: int = 0
    warmup_steps: int = 0
    weight_decay: float = 0.0
    lr_scheduler: str = "linear"
    max_grad_norm: float = 1.0
    max_length: int = 512
    lora: LoraSpec | None = None
    dtype: str | None = None
    bf16: bool = False
    fp16: bool = False
    gradient_checkpointing: bool = False
    optim: str = "adamw_torch"
    log_every: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.lora, Mapping):
            object.__setattr__(self, "lora", LoraSpec.from_dict(self.lora))
        if self.max_steps is None and self.epochs is None:
            raise TrainConfigError("set max_steps or epochs")
        if self.max_steps is not None and (not isinstance(self.max_steps, int) or self.max_steps < 1):
            raise TrainConfigError(f"max_steps must be a positive int or None, got {self.max_steps!r}")
        if self.max_steps is None and not (isinstance(self.epochs, (int, float)) and self.epochs > 0):
            raise TrainConfigError(f"epochs must be > 0, got {self.epochs!r}")
        for name in ("batch_size", "grad_accum", "save_every", "max_length", "log_every"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise TrainConfigError(f"{name} must be a positive int, got {v!r}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise TrainConfigError(f"lr must be > 0, got {self.lr!r}")
        if self.warmup_steps < 0 or self.weight_decay < 0 or self.max_grad_norm < 0:
            raise TrainConfigError("warmup_steps, weight_decay and max_grad_norm must be >= 0")
        if self.dtype is not None and str(self.dtype).lower() not in DTYPE_NAMES:
            raise TrainConfigError(f"unknown dtype {self.dtype!r}; use one of {list(DTYPE_NAMES)}")
        if self.bf16 and self.fp16:
            raise TrainConfigError("choose at most one of bf16 and fp16")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Build from a mapping (a config file), rejecting unknown keys."""
        return _from_dict(cls, values, "TrainConfig")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the form recorded in the manifest)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["lora"] = self.lora.to_dict() if self.lora is not None else None
        return d

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied (unknown keys are an error).

        Example:
            >>> TrainConfig().replace(max_steps=5).max_steps
            5
        """
        return TrainConfig.from_dict({**self.to_dict(), **changes})

    def training_arguments(self, output_dir: str, *, progress: bool = True) -> Any:
        """The ``transformers.TrainingArguments`` this config stands for."""
        import torch
        from transformers import TrainingArguments

        return TrainingArguments(
            output_dir=output_dir,
            learning_rate=self.lr,
            max_steps=self.max_steps if self.max_steps is not None else -1,
            num_train_epochs=float(self.epochs) if self.epochs is not None else 1.0,
            per_device_train_batch_size=self.batch_size,
            gradient_accumulation_steps=self.grad_accum,
            save_strategy="steps",
            save_steps=self.save_every,
            logging_strategy="steps",
            logging_steps=self.log_every,
            seed=self.seed,
            warmup_steps=self.warmup_steps,
            weight_decay=self.weight_decay,
            lr_scheduler_type=self.lr_scheduler,
            max_grad_norm=self.max_grad_norm,
            bf16=self.bf16,
            fp16=self.fp16,
            activation_checkpointing=self.gradient_checkpointing,
            optim=self.optim,
            report_to="none",
            disable_tqdm=not progress,
            remove_unused_columns=False,
            dataloader_num_workers=0,
            dataloader_pin_memory=torch.cuda.is_available(),
            save_only_model=False,
        )


#: Top-level keys of a run config file besides TrainConfig fields.
RUN_FILE_KEYS: tuple[str, ...] = ("method", "method_config", "data", "train")


def load_run_file(path: str | Any) -> dict[str, Any]:
    """Read a JSON or YAML run config.

    Layout: TrainConfig fields at the top level or under ``train``; optional ``method``
    (a name), ``method_config`` (the method's hyper-parameters) and ``data``
    (``{role: spec}``, see :func:`safetygeo.training.data.load_data_spec`). Returns
    ``{"train": {...}, "method": str | None, "method_config": {...}, "data": {...}}``.

    Raises:
        TrainConfigError: unreadable file or unknown keys (named).

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "run.yaml"
        >>> _ = p.write_text("lr: 0.001\\nmethod_config: {refusal: 'No.'}\\n")
        >>> load_run_file(p)["train"], load_run_file(p)["method_config"]
        ({'lr': 0.001}, {'refusal': 'No.'})
    """
    import json
    from pathlib import Path

    p = Path(path).expanduser()
    if not p.is_file():
        raise TrainConfigError(f"config file {str(p)!r} does not exist")
    from safetygeo._io import read_text

    text = read_text(p, what="config file", error=TrainConfigError)
    try:
        if p.suffix.lower() in (".yaml", ".yml"):
            import yaml

            raw = yaml.safe_load(text) or {}
        else:
            raw = json.loads(text)
    except Exception as exc:  # yaml.YAMLError, json.JSONDecodeError
        raise TrainConfigError(f"cannot parse config file {str(p)!r}: {exc}") from exc
    if not isinstance(raw, Mapping):
        raise TrainConfigError(f"config file {str(p)!r} must hold a mapping")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(raw) - fields - set(RUN_FILE_KEYS))
    if unknown:
        raise TrainConfigError(
            f"unknown key(s) {unknown} in {str(p)!r}; allowed: TrainConfig fields "
            f"{sorted(fields)} and {list(RUN_FILE_KEYS)}"
        )
    train = {k: v for k, v in raw.items() if k in fields}
    train.update(raw.get("train") or {})
    for key in ("method_config", "data"):
        if not isinstance(raw.get(key) or {}, Mapping):
            raise TrainConfigError(f"{key!r} in {str(p)!r} must be a mapping")
    return {"train": train, "method": raw.get("method"),
            "method_config": dict(raw.get("method_config") or {}), "data": dict(raw.get("data") or {})}
