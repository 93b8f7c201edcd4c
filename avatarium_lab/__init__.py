"""avatarium-lab: a Jupyter-first workbench for conversational 3D talking avatars.

A conversation turn is a stream of typed events (``avatarium_lab.events``) produced by the ``Pipeline``
(``avatarium_lab.pipeline``) for a configuration (``avatarium_lab.config``).
"""

from .config import Config, load_config
from .pipeline import Conversation, Pipeline, TurnResult

__all__ = ["Config", "Conversation", "Pipeline", "TurnResult", "load_config"]
__version__ = "0.1.0"
