"""The pipeline and its stages."""

from .imageio import Decoded, Limits, decode, encode
from .options import Options, parse_color
from .pipeline import Engine, Result
from .session import Session

__all__ = [
    "Decoded",
    "Limits",
    "decode",
    "encode",
    "Options",
    "parse_color",
    "Engine",
    "Result",
    "Session",
]
