"""OpenAPI description of the remove.bg-compatible request body (parsed by hand, because it
comes as multipart, urlencoded or JSON)."""

from __future__ import annotations

from typing import Any

from ..engine.options import spec_of

__all__ = ["FIELDS", "request_body_schema"]

_STR = {"type": "string"}
_BOOL = {"type": "boolean"}

# name -> (schema, description)
FIELDS: dict[str, tuple[dict[str, Any], str]] = {
    "image_file": ({"type": "string", "format": "binary"},
                   "The image (multipart only). Send exactly one of image_file, image_file_b64 "
                   "and image_url."),
    "image_file_b64": (_STR, "The image, base64-encoded (a data: URL prefix is accepted)."),
    "image_url": (_STR, "An image URL; refused (400) unless URL fetching is enabled "
                        "(CLEANCUT_URL_FETCH_ENABLED)."),
    "size": ({"type": "string", "default": "preview",
              "enum": ["auto", "preview", "small", "regular", "medium", "hd", "full", "4k",
                       "50MP"]},
             "Output size: preview/small/regular up to 0.25 MP, medium 1.5 MP, hd 4 MP; "
             "full, 4k, 50MP and auto keep the original (within the service's limits). "
             "Default preview, as remove.bg."),
    "type": ({"type": "string", "default": "auto",
              "enum": ["auto", "person", "product", "animal", "car", "car_interior", "car_part",
                       "transportation", "graphic", "other"]},
             "Foreground type; chooses the model: person uses u2net_human_seg when installed, "
             "everything else the default model."),
    "type_level": ({"type": "string", "enum": ["none", "1", "2", "latest"]},
                   "Accepted for compatibility; no effect."),
    "model": (_STR, "cleancut extension: the model to use (see GET /api/models); overrides type."),
    "format": ({"type": "string", "default": "auto",
                "enum": ["auto", "png", "jpg", "webp", "zip"]},
               "auto: PNG, or JPEG when bg_color or bg_image_url is set. zip: color.jpg + "
               "alpha.png. jpg without bg_color or bg_image_url puts the subject on white."),
    "channels": ({"type": "string", "default": "rgba", "enum": ["rgba", "alpha"]},
                 "rgba: the cutout; alpha: the mask only (greyscale)."),
    "bg_color": (_STR, "Background colour: hex (81d4fa, fff, #81d4fa77) or a colour name."),
    "semitransparency": (_BOOL, "Accepted for compatibility; no effect."),
    "add_shadow": (_BOOL, "Accepted for compatibility; no effect."),
    "bg_image_url": (_STR, "A background image URL: the cutout goes over it, scaled to cover "
                           "and centred. Refused (400) unless URL fetching is enabled "
                           "(CLEANCUT_URL_FETCH_ENABLED), or together with bg_color; ignored "
                           "with channels=alpha."),
    "bg_image_file": ({"type": "string", "format": "binary"},
                      "Not supported (400); use bg_color or bg_image_url."),
}


# the output geometry is the engine's own rows, under remove.bg's names
FIELDS.update({name: ({**_BOOL, "default": False} if spec_of(name).kind == "boolean" else _STR,
                      spec_of(name).help) for name in ("crop", "crop_margin", "scale", "position")})
FIELDS["position"] = (_STR, FIELDS["position"][1] + " Default original; center when scale is set.")


def request_body_schema() -> dict[str, Any]:
    def schema(skip_files: bool) -> dict[str, Any]:
        props = {name: {**spec, "description": desc} for name, (spec, desc) in FIELDS.items()
                 if not (skip_files and spec.get("format") == "binary")}
        return {"schema": {"type": "object", "properties": props}}

    return {
        "required": True,
        "content": {
            "multipart/form-data": schema(False),
            "application/x-www-form-urlencoded": schema(True),
            "application/json": schema(True),
        },
    }
