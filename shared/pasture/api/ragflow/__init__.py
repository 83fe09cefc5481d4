"""RAGFlow v0.14 dialect: HTTP 200 with `{code, message, data}`, plus the singular-path draft."""
