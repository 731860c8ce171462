"""cleancut on Ray (``pip install 'cleancut[ray]'``): the folder job on Ray Data and the service on
Ray Serve.

- ``cleancut p IN_DIR OUT_DIR --engine ray`` (:mod:`.data`): the same job as the local engine,
  across a cluster's actors.
- ``cleancut serve --engine ray`` or ``serve run cleancut.ray:app [SETTING=VALUE ...]``
  (:mod:`.serve`): the service, one app per replica.
- :mod:`.cluster`: how Ray is started or joined, offline and private.

Importing this package imports no Ray: only the functions that need it do, and a missing Ray is
:class:`~cleancut.errors.RayNotInstalled`, which names the extra to install.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ray.serve import Application

__all__ = ["app"]


def app(args: dict[str, str]) -> Application:
    """The Serve application builder of ``serve run cleancut.ray:app``: ``args`` are settings
    by field name (``models=u2netp workers=2``), over the ``CLEANCUT_*`` variables.

    ``serve run`` starts or joins Ray before it calls this, so cleancut cannot keep that Ray
    private: give ``serve run`` ``RAY_USAGE_STATS_ENABLED=0``, ``RAY_AUTH_MODE=token``,
    ``RAY_AUTH_TOKEN_PATH`` (else Ray writes ``~/.ray/auth_token``) and ``RAY_TMPDIR`` (else
    ``/tmp/ray``) in its environment. ``cleancut serve --engine ray`` sets them itself."""
    from ..config import load
    from .serve import build

    return build(load(None, **args))
