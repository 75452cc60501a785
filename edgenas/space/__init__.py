"""The search space: candidate ops (a registry), architecture records, the supernet and freeze().

Importing this package imports torch; the CLI imports it lazily.
"""

from .arch import Arch, LayerChoice, SpaceConfig, StageConfig
from .ops import create_op, list_ops, register_op
from .supernet import Supernet, freeze

__all__ = ["Arch", "LayerChoice", "SpaceConfig", "StageConfig", "Supernet", "freeze", "create_op", "list_ops", "register_op"]
