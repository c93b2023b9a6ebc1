"""A faithful local emulator of every Seedance provider API, served on loopback only."""

from seedance_pipeline.emulator.server import EmulatorServer, serve
from seedance_pipeline.emulator.state import AuditRecord, EmulatorConfig, EmulatorState, Faults

__all__ = ["AuditRecord", "EmulatorConfig", "EmulatorServer", "EmulatorState", "Faults", "serve"]
