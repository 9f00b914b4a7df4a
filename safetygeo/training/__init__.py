"""Training wrapped thinly around ``transformers.Trainer``: defenses and attacks as small
methods, checkpointed into resumable trajectory folders.

* :func:`train` runs a :class:`Method` (``"sft"``, ``"harmful_sft"``, ...) on a
  :class:`~safetygeo.models.ModelHandle` (full fine-tune or LoRA) and returns a
  :class:`Trajectory` (``out/step-NNNNNN/`` checkpoints + ``out/trajectory.json``).
* defenses and attacks are methods (``available_methods()``): refusal ``sft``, ``r2d2``,
  the collapse-trap defenses ``sdd``, ``ctrap``, ``seam``, and the ``harmful_sft`` attack,
  which :func:`attack` runs for a fixed budget ("defend, then attack" is two calls).
* :class:`GeometryCallback` computes geometry on the fly; :class:`GradientGeometryCallback`
  logs per-layer gradient cosines and G-effects (:mod:`.gradient_geometry`, which also
  measures them post hoc over a trajectory: :func:`gradient_geometry_along`).

Example:
    >>> from safetygeo.training import TrainConfig, available_methods
    >>> "sft" in available_methods(), TrainConfig().save_every
    (True, 50)
"""

from __future__ import annotations

import importlib
from typing import Any

# names are imported on first use: `import safetygeo.attacks.gcg` (or .config) must not pay
# for transformers.Trainer's import (~3 s)
_LAZY = {
    "CTRAP": "safetygeo.training.methods.ctrap",
    "CTRAPConfig": "safetygeo.training.methods.ctrap",
    "CheckpointInfo": "safetygeo.training.checkpoints",
    "DEFAULT_REFUSAL": "safetygeo.training.methods.sft",
    "DamagedCheckpoint": "safetygeo.training.checkpoints",
    "DamagedCheckpointError": "safetygeo.training.errors",
    "DatasetFormatError": "safetygeo.training.errors",
    "EmptyDatasetError": "safetygeo.training.errors",
    "GeometryCallback": "safetygeo.training.callbacks",
    "GradientGeometryCallback": "safetygeo.training.gradient_geometry",
    "HarmfulSFT": "safetygeo.training.methods.harmful_sft",
    "HarmfulSFTConfig": "safetygeo.training.methods.harmful_sft",
    "InstructSFT": "safetygeo.training.methods.sft",
    "LoraSpec": "safetygeo.training.config",
    "LoraTargetError": "safetygeo.training.errors",
    "Method": "safetygeo.training.method",
    "MethodTrainer": "safetygeo.training.trainer",
    "RefusalSFT": "safetygeo.training.methods.sft",
    "RefusalSFTConfig": "safetygeo.training.methods.sft",
    "SDD": "safetygeo.training.methods.sdd",
    "SDDConfig": "safetygeo.training.methods.sdd",
    "SDDPairs": "safetygeo.training.methods.sdd",
    "Seam": "safetygeo.training.methods.seam",
    "SeamConfig": "safetygeo.training.methods.seam",
    "StepContext": "safetygeo.training.method",
    "StepTimer": "safetygeo.training.callbacks",
    "SupervisedMethod": "safetygeo.training.methods.sft",
    "TrainConfig": "safetygeo.training.config",
    "TrainConfigError": "safetygeo.training.errors",
    "TrainingError": "safetygeo.training.errors",
    "Trajectory": "safetygeo.training.trajectory",
    "TrajectoryError": "safetygeo.training.errors",
    "TrajectoryMismatchError": "safetygeo.training.errors",
    "UnknownMethodError": "safetygeo.training.errors",
    "Unlearn": "safetygeo.training.methods.unlearn",
    "UnlearnConfig": "safetygeo.training.methods.unlearn",
    "as_records": "safetygeo.data.records",
    "attack": "safetygeo.training.finetune_attack",
    "available_methods": "safetygeo.training.method",
    "build_sdd_pairs": "safetygeo.training.methods.sdd",
    "check_lora_targets": "safetygeo.training.core",
    "collapse_trap_probe": "safetygeo.training.methods.ctrap",
    "completion_ce": "safetygeo.activations.losses",
    "completion_logprobs": "safetygeo.activations.losses",
    "cosine_gradient": "safetygeo.training.methods.seam",
    "encode_completions": "safetygeo.data.records",
    "end_of_turn": "safetygeo.data.records",
    "get_method": "safetygeo.training.method",
    "get_method_class": "safetygeo.training.method",
    "gradient_geometry_along": "safetygeo.training.gradient_geometry",
    "model_fingerprint": "safetygeo.models.fingerprint",
    "read_gradient_geometry": "safetygeo.training.gradient_geometry",
    "records_sha256": "safetygeo.data.records",
    "register_method": "safetygeo.training.method",
    "sequence_logprob": "safetygeo.activations.losses",
    "train": "safetygeo.training.core",
}


__all__ = [
    "CTRAP",
    "CTRAPConfig",
    "CheckpointInfo",
    "DEFAULT_REFUSAL",
    "DamagedCheckpoint",
    "DamagedCheckpointError",
    "DatasetFormatError",
    "EmptyDatasetError",
    "GeometryCallback",
    "GradientGeometryCallback",
    "HarmfulSFT",
    "HarmfulSFTConfig",
    "InstructSFT",
    "LoraSpec",
    "LoraTargetError",
    "Method",
    "MethodTrainer",
    "RefusalSFT",
    "RefusalSFTConfig",
    "SDD",
    "SDDConfig",
    "SDDPairs",
    "Seam",
    "SeamConfig",
    "StepContext",
    "StepTimer",
    "SupervisedMethod",
    "TrainConfig",
    "TrainConfigError",
    "TrainingError",
    "Trajectory",
    "TrajectoryError",
    "TrajectoryMismatchError",
    "UnknownMethodError",
    "Unlearn",
    "UnlearnConfig",
    "as_records",
    "attack",
    "available_methods",
    "build_sdd_pairs",
    "check_lora_targets",
    "collapse_trap_probe",
    "completion_ce",
    "completion_logprobs",
    "cosine_gradient",
    "encode_completions",
    "end_of_turn",
    "get_method",
    "get_method_class",
    "gradient_geometry_along",
    "model_fingerprint",
    "read_gradient_geometry",
    "records_sha256",
    "register_method",
    "sequence_logprob",
    "train",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'safetygeo.training' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
