"""A local stand-in for WorkspaceApp, VPC, BSS and IAM: same paths, same JSON, with faults on demand."""

from bot.sandbox.app import Sandbox
from bot.sandbox.state import SandboxConfig

__all__ = ["Sandbox", "SandboxConfig"]
