"""Sources: one module per log format, registered in ``SOURCES`` in ``DETECTION_ORDER``.

How to add one:
1. Write ``nhiaudit/sources/<name>.py`` with ``NAME = "<name>"``, ``DETECTION``, ``READS``,
   ``detect(path)`` and ``load(con, files)`` (DuckDB SQL over the file; rows into ``staged`` /
   ``staged_rejected``; any new credential type declared in queries/correlate/15_credential_types.sql).
2. Put ``<name>`` in ``DETECTION_ORDER`` below, before any source whose detection is looser than yours.
3. Add ``tests/sources/test_<name>.py``, a real sample under ``../shared/samples`` (or a file in
   ``sample_logs/``) that it claims, and a ``## <name>`` section in docs/sources.md.
   tests/test_source_registry.py fails until each of these is there.
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

# Detection order matters: the first source whose detect() says yes takes the file. A name here is
# the registration: the module nhiaudit/sources/<name>.py is imported from it.
DETECTION_ORDER = (
    "cloudtrail",
    "k8s_audit",
    "gcp_audit",
    "entra_audit",
    "azure",
    "kong",
    "envoy",
    "apigateway",
    "keycloak",
    "auth0",
    "okta",
    "provenance",
    "github_actions",
    "teleport",
    "vault",
    "mcp_gateway",
    "otel",
    "invariant",
)

SOURCES: dict[str, ModuleType] = {name: import_module(f"{__name__}.{name}") for name in DETECTION_ORDER}
