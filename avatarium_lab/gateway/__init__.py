"""The gateway: authenticated HTTP + WebSocket API over the pipeline (``avatarium serve``). See ``app.py``."""

from .app import create_app
from .security import InsecureBind, check_bind, is_loopback

__all__ = ["InsecureBind", "check_bind", "create_app", "is_loopback"]
