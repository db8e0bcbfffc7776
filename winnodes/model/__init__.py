"""Typed configuration, requirement profiles and step IDs (pure: no I/O library imports)."""

from winnodes.model.config import (
    ClusterConfig,
    DnsConfig,
    GoldenImageConfig,
    GoldenImageTimeouts,
    Hardware,
    MachineSetConfig,
    Names,
    PipelineConfig,
    Placement,
    Source,
    UnattendSettings,
    Waits,
    Workspace,
    load_config,
    parse_config,
)
from winnodes.model.profiles import PROFILES, RequirementProfile, get_profile
from winnodes.model.steps import STEP_TITLES, StepId

__all__ = [
    "PROFILES",
    "STEP_TITLES",
    "ClusterConfig",
    "DnsConfig",
    "GoldenImageConfig",
    "GoldenImageTimeouts",
    "Hardware",
    "MachineSetConfig",
    "Names",
    "PipelineConfig",
    "Placement",
    "RequirementProfile",
    "Source",
    "StepId",
    "UnattendSettings",
    "Waits",
    "Workspace",
    "get_profile",
    "load_config",
    "parse_config",
]
