"""Opens the audit log the settings choose and makes it the operator's audit sink.

Every replica opens it (each publishes the same verifier key and can serve `wayang audit`), but
only the leader decides, so only the leader appends; the store's compare-and-swap keeps the log
linear even if two replicas ever append at once.
"""

from __future__ import annotations

from typing import Any

import kopf

from ..auditlog.configmaps import ConfigMapStore, signer_for
from ..auditlog.sink import Store, StoreSink
from ..core.attestation import Attestor
from .runtime import RUNTIME


@kopf.on.startup()
async def open_audit_log(**_: Any) -> None:
    ours = RUNTIME.settings
    if ours.audit_store == "log":
        return
    signer = await signer_for(RUNTIME.api, ours.audit_namespace)
    RUNTIME.attestor = Attestor(signer.private_key)  # survives restarts, like the log's key
    store: Store
    if ours.audit_store == "postgres":
        from ..auditlog.postgres import PostgresStore  # noqa: PLC0415 - only with that store

        if not ours.audit_postgres_dsn:
            raise kopf.PermanentError("WAYANG_AUDIT_STORE=postgres needs WAYANG_AUDIT_POSTGRES_DSN")
        store = await PostgresStore.connect(ours.audit_postgres_dsn, signer)
    else:
        configmaps = ConfigMapStore(RUNTIME.api, ours.audit_namespace, signer)
        await configmaps.open()
        store = configmaps
    RUNTIME.sink = StoreSink(store)
