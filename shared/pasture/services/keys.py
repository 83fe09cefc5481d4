"""Where every aggregate lives in the single-table Records store (DynamoDB-shaped).

Every partition key starts with the tenant, so no query can cross tenants.

| item                | pk                          | sk          |
|---------------------|-----------------------------|-------------|
| project             | T#<t>#NS#<ns>               | <project>   |
| dataset             | T#<t>#DATASET               | <id>        |
| dataset name -> id  | T#<t>#P#<ns>/<project>#DS   | <name>      |
| tenant-level dataset name (lowercased) -> id | T#<t>#DSNAME | <name> |
| chat assistant      | T#<t>#ASSISTANT             | <id>        |
| assistant name      | T#<t>#ASSISTANTNAME         | <name, lowercased> |
| agent               | T#<t>#AGENT                 | <id>        |
| conversation (assistant or agent session) | T#<t>#CONV#<owner id> | <session id> |
| document            | T#<t>#DOC#<dataset id>      | <sha256>    |
| task                | T#<t>#P#<ns>/<project>#TASK | <task id>   |
| chat session (TTL)  | T#<t>#P#<ns>/<project>#CHAT | <session id>|
| account API key     | T#<t>#APIKEY                | <sha256 hex of the key> |
| LlamaChat conversation | T#<t>#LCCONV             | <24 hex id> |
| LlamaChat turn (message + reply) | T#<t>#LCTURN#<conversation id> | <sequence, 8 digits> |
| internet chatbot chat | T#<t>#ICHAT                | <chat id: UUIDv7, so key order = creation order> |
| internet chatbot message row | T#<t>#IROW         | <chat id>#<row id: UUIDv7> |

The one exception is the credential lookups of RAGFlow accounts (services/accounts.py): they
are found before any tenant is known, so they sit in three global partitions, like DynamoDB's
key-lookup items. They are only ever read by exact key (get / conditional put / delete), never
queried, and each names the tenant it belongs to. No secret is stored in clear.

| item                        | pk        | sk                           |
|-----------------------------|-----------|------------------------------|
| user by email (unique)      | USER      | <lowercased email>           |
| API key -> tenant           | APIKEY    | <sha256 hex of the key>      |
| login session (TTL)         | SESSION   | <sha256 hex of the token>    |

Consumer keys made by `pasture keys create` (services/consumer_keys.py) are two more global
lookups of the same kind: by digest when a request comes in, by name for `keys list|revoke`.

| item                        | pk          | sk                                  |
|-----------------------------|-------------|-------------------------------------|
| consumer key -> consumer    | CONSUMERKEY | <sha256 hex of the key>             |
| consumer's keys             | CONSUMER    | <consumer name>#<key id>            |
"""

from __future__ import annotations


def project(tenant: str, namespace: str) -> str:
    return f"T#{tenant}#NS#{namespace}"


def datasets(tenant: str) -> str:
    return f"T#{tenant}#DATASET"


def dataset_names(tenant: str, namespace: str, project: str) -> str:
    return f"T#{tenant}#P#{namespace}/{project}#DS"


def tenant_dataset_names(tenant: str) -> str:
    return f"T#{tenant}#DSNAME"


def assistants(tenant: str) -> str:
    return f"T#{tenant}#ASSISTANT"


def assistant_names(tenant: str) -> str:
    return f"T#{tenant}#ASSISTANTNAME"


def agents(tenant: str) -> str:
    return f"T#{tenant}#AGENT"


def conversations(tenant: str, owner_id: str) -> str:
    """Sessions of one chat assistant or agent."""
    return f"T#{tenant}#CONV#{owner_id}"


def documents(tenant: str, dataset_id: str) -> str:
    return f"T#{tenant}#DOC#{dataset_id}"


def tasks(tenant: str, namespace: str, project: str) -> str:
    return f"T#{tenant}#P#{namespace}/{project}#TASK"


def chat_sessions(tenant: str, namespace: str, project: str) -> str:
    return f"T#{tenant}#P#{namespace}/{project}#CHAT"


def account_keys(tenant: str) -> str:
    return f"T#{tenant}#APIKEY"


def llamachat_conversations(tenant: str) -> str:
    return f"T#{tenant}#LCCONV"


def llamachat_turns(tenant: str, conversation_id: str) -> str:
    return f"T#{tenant}#LCTURN#{conversation_id}"


def chatbot_chats(tenant: str) -> str:
    """llama_internet_chatbot's chats."""
    return f"T#{tenant}#ICHAT"


def chatbot_rows(tenant: str) -> str:
    """All message rows of a tenant's internet-chatbot chats, one partition: one chat's rows
    are the sort-key prefix `<chat id>#`, in time order; listing all is one query."""
    return f"T#{tenant}#IROW"


# Global credential lookups (see the table above): read by exact key only.
USERS = "USER"
API_KEYS = "APIKEY"
SESSIONS = "SESSION"
CONSUMER_KEYS = "CONSUMERKEY"
CONSUMERS = "CONSUMER"


def blob(dataset_id: str, document_id: str) -> str:
    # Dataset ids are random and only reachable after a tenant-checked lookup.
    return f"datasets/{dataset_id}/{document_id}"
