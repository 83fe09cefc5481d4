"""Where every aggregate lives in the single-table Records store (DynamoDB-shaped).

Every partition key starts with the tenant, so no query can cross tenants.

| item                | pk                          | sk          |
|---------------------|-----------------------------|-------------|
| project             | T#<t>#NS#<ns>               | <project>   |
| dataset             | T#<t>#DATASET               | <id>        |
| dataset name -> id  | T#<t>#P#<ns>/<project>#DS   | <name>      |
| document            | T#<t>#DOC#<dataset id>      | <sha256>    |
| task                | T#<t>#P#<ns>/<project>#TASK | <task id>   |
| chat session (TTL)  | T#<t>#P#<ns>/<project>#CHAT | <session id>|
"""

from __future__ import annotations


def project(tenant: str, namespace: str) -> str:
    return f"T#{tenant}#NS#{namespace}"


def datasets(tenant: str) -> str:
    return f"T#{tenant}#DATASET"


def dataset_names(tenant: str, namespace: str, project: str) -> str:
    return f"T#{tenant}#P#{namespace}/{project}#DS"


def documents(tenant: str, dataset_id: str) -> str:
    return f"T#{tenant}#DOC#{dataset_id}"


def tasks(tenant: str, namespace: str, project: str) -> str:
    return f"T#{tenant}#P#{namespace}/{project}#TASK"


def chat_sessions(tenant: str, namespace: str, project: str) -> str:
    return f"T#{tenant}#P#{namespace}/{project}#CHAT"


def blob(dataset_id: str, document_id: str) -> str:
    # Dataset ids are random and only reachable after a tenant-checked lookup.
    return f"datasets/{dataset_id}/{document_id}"
