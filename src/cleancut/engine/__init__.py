"""The pipeline and its stages."""

from .imageio import Decoded, Limits, decode, encode
from .options import OPTIONS, Options, OptionSpec, parse_color
from .pipeline import STAGES, Engine, Job, Result
from .session import Session

__all__ = [
    "Decoded",
    "Limits",
    "decode",
    "encode",
    "Options",
    "OptionSpec",
    "OPTIONS",
    "parse_color",
    "Engine",
    "Job",
    "Result",
    "STAGES",
    "Session",
]
