"""The pure decision core: functions over typed inputs, no I/O, no kopf, no Kubernetes client.

Handlers gather the facts (the Plugin, its approvals, the policies, the namespace's other
plugins), call these functions, and write what they decide. Everything here is unit-tested
without a cluster.
"""
