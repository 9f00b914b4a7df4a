"""Attacks: GCG adversarial suffixes (:mod:`.gcg`) and attack success rates (:mod:`.asr`).

The fine-tuning attacks (harmful SFT, harmful RL) are training methods
(:mod:`safetygeo.training.methods`); their success is measured with the same ASR
(:func:`safetygeo.behavior.metrics.attack_success_rate`).
"""
