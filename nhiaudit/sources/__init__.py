"""Sources: one module per log format, registered in ``SOURCES``.

How to add one:
1. Write ``nhiaudit/sources/<name>.py`` with ``NAME``, ``DETECTION``, ``READS``, ``detect(path)`` and
   ``load(con, files)`` (DuckDB SQL over the file; rows into ``staged`` / ``staged_rejected``).
2. Add it to ``SOURCES`` below, before any source whose detection is looser than yours.
3. Add ``tests/sources/test_<name>.py`` (the registry meta-test fails until you do).
"""

from __future__ import annotations

from types import ModuleType

from nhiaudit.sources import (
    apigateway,
    auth0,
    azure,
    cloudtrail,
    envoy,
    gcp_audit,
    invariant,
    k8s_audit,
    keycloak,
    kong,
    otel,
    provenance,
    vault,
)

# Detection order matters: the first source whose detect() says yes takes the file.
SOURCES: dict[str, ModuleType] = {
    module.NAME: module
    for module in (
        cloudtrail,
        k8s_audit,
        gcp_audit,
        azure,
        kong,
        envoy,
        apigateway,
        keycloak,
        auth0,
        provenance,
        vault,
        otel,
        invariant,
    )
}
