"""`pasture serve | ingest | query | keys create|list|revoke`."""

from __future__ import annotations

import argparse
import fcntl
import ipaddress
import os
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

from pasture.config import Settings
from pasture.domain.errors import Conflict, PastureError


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    for name in ("host", "port", "data_dir"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    return Settings(**overrides)


@contextmanager
def data_dir_lock(data_dir: Path, owner: str) -> Iterator[None]:
    """One process at a time owns a data dir: the local vector index lives in its memory."""
    data_dir.mkdir(parents=True, exist_ok=True)
    fh: IO[str] = (data_dir / "pasture.lock").open("a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "another process"
        fh.close()
        raise SystemExit(
            f"error: {data_dir} is in use by {holder}. Stop it, use the HTTP API, or pass another --data-dir."
        ) from None
    fh.seek(0)
    fh.truncate()
    fh.write(f"{owner} (pid {os.getpid()})")
    fh.flush()
    try:
        yield
    finally:
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@contextmanager
def _consumer_keys(s: Settings) -> Iterator[Any]:
    """The consumer key store of the data dir. No data-dir lock: keys are SQLite records
    (WAL), safe beside a running server, which sees a new or revoked key at once.

    PASTURE_BACKEND=aws (an operator's machine with AWS credentials): the stack's, through
    the container (lazy: only the table and API Gateway are touched), so a key is also an
    API key in the usage plan of PASTURE_USAGE_PLAN_ID."""
    if s.backend == "aws":
        from pasture.bootstrap import build_container

        c = build_container(s)
        try:
            yield c.consumer_keys
        finally:
            c.close()
        return
    from pasture.adapters.local.sqlite_db import SqliteDb
    from pasture.adapters.local.sqlite_records import SqliteRecords
    from pasture.services.consumer_keys import ConsumerKeyService

    db = SqliteDb(s.data_dir / "pasture.db")
    try:
        yield ConsumerKeyService(SqliteRecords(db))
    finally:
        db.close()


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from pasture.api.app import create_app

    s = _settings(args)
    with _consumer_keys(s) as ck:
        open_mode = s.open_mode and not ck.any()
    if open_mode and not _is_loopback(s.host):
        print(
            f"error: no API key is configured, so Pasture runs open and binds to 127.0.0.1 only"
            f" (asked for {s.host}). Set PASTURE_API_KEYS or PASTURE_API_KEYS_FILE to serve beyond"
            " this machine (or create one: pasture keys create NAME).",
            file=sys.stderr,
        )
        return 2
    with data_dir_lock(s.data_dir, "pasture serve"):
        mode = "open single-tenant mode" if open_mode else "API keys required"
        print(f"Pasture on http://{s.host}:{s.port} ({mode}, data in {s.data_dir})", flush=True)
        uvicorn.run(create_app(settings=s), host=s.host, port=s.port, log_level=s.log_level)
    return 0


def _split_project(ref: str) -> tuple[str, str]:
    ns, sep, name = ref.partition("/")
    if not sep or not ns or not name:
        raise SystemExit(f"error: expected NAMESPACE/PROJECT, got {ref!r}")
    return ns, name


def cmd_ingest(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from pasture.bootstrap import build_container

    s = _settings(args)
    ns, project = _split_project(args.project)
    files = [Path(f) for f in args.files]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise SystemExit(f"error: not a file: {', '.join(missing)}")
    tenant = args.tenant or s.open_tenant
    with data_dir_lock(s.data_dir, "pasture ingest"):
        c = build_container(s)
        try:
            with suppress(Conflict):
                c.projects.create(tenant, ns, project, "rag")
            with suppress(Conflict):
                c.datasets.create(tenant, ns, project, args.dataset, None, None)
            for f in files:
                with f.open("rb") as fh:
                    c.datasets.upload(tenant, ns, project, args.dataset, f.name, fh)
            report = c.ingestion.process(
                tenant, ns, project, args.dataset, wait=False, reprocess=args.reprocess
            )
            with Progress(
                TextColumn("[bold]ingesting"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
            ) as bar:
                st = c.workflow.status(report.task_id)
                job = bar.add_task("files", total=st.total)
                while not st.state.finished:
                    bar.update(job, completed=st.finished_items)
                    time.sleep(0.2)
                    st = c.workflow.status(report.task_id)
                bar.update(job, completed=st.finished_items)
            failed = {k: v for k, v in st.results.items() if v.get("status") != "processed"}
            docs = {
                d.id: d
                for d in c.datasets.documents(
                    tenant, c.datasets.get(tenant, ns, project, args.dataset).id
                )
            }
            chunks = sum(int(v.get("chunks", 0)) for v in st.results.values())
            print(
                f"{st.succeeded} processed, {st.failed} failed, {report.skipped} skipped, {chunks} chunks"
            )
            for doc_id, res in failed.items():
                name = docs[doc_id].filename if doc_id in docs else doc_id
                print(f"  FAIL {name}: {res.get('error', res.get('status'))}")
            return 1 if failed else 0
        finally:
            c.close()


def cmd_query(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from pasture.bootstrap import build_container
    from pasture.services.retrieval import RetrievalRequest

    s = _settings(args)
    ns, project = _split_project(args.project)
    with data_dir_lock(s.data_dir, "pasture query"):
        c = build_container(s)
        try:
            r = c.retrieval.query(
                args.tenant or s.open_tenant,
                ns,
                project,
                RetrievalRequest(
                    query=args.text,
                    database=args.database,
                    top_k=args.top_k,
                    retrieval_strategy=args.strategy,
                ),
            )
        finally:
            c.close()
    table = Table(
        title=f"{len(r.hits)} results from {r.database} ({r.mode.value}, {r.elapsed_ms:.1f} ms)"
    )
    for col in ("score", "kw", "vec", "file", "text"):
        table.add_column(col)
    for h in r.hits:
        text = " ".join(h.text.split())
        table.add_row(
            f"{h.score:.3f}",
            f"{h.keyword_score:.3f}",
            f"{h.vector_score:.3f}",
            str(h.metadata.get("filename", h.document_id[:12])),
            text[:160] + ("…" if len(text) > 160 else ""),
        )
    Console().print(table)
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    s = _settings(args)
    with _consumer_keys(s) as ck:
        if args.keys_command == "create":
            key = ck.create(args.name)
            print(key.secret)
            print(
                f"Key {key.key_id} for consumer {key.consumer!r}: send it as X-Api-Key (or"
                " Authorization: Bearer). It is shown only now; only its digest is kept.",
                file=sys.stderr,
            )
            if key.api_key_id:
                print(
                    f"It is also API Gateway API key {key.api_key_id} in usage plan"
                    f" {s.usage_plan_id} (aws apigateway get-api-key --api-key"
                    f" {key.api_key_id} --include-value shows it again).",
                    file=sys.stderr,
                )
            if s.open_mode and s.backend == "local":
                print(
                    "A server running in open mode starts requiring keys when restarted.",
                    file=sys.stderr,
                )
        elif args.keys_command == "list":
            static = sorted(s.consumer_keys())
            for k in ck.listed(args.name):
                when = datetime.fromtimestamp(k.created_at, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
                print(f"{k.consumer}\t{k.key_id}\t{when}")
            for name in static:
                if args.name in (None, name):
                    print(f"{name}\t(settings)\t-")
        else:
            n = ck.revoke(args.name, args.key_id)
            print(f"revoked {n} key(s) of {args.name!r}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pasture", description="Pasture RAG, chat and speech API")
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--host", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8000)")
    serve.add_argument("--data-dir", type=Path, help="data directory (default ~/.pasture)")
    serve.set_defaults(func=cmd_serve)

    ingest = sub.add_parser("ingest", help="upload and process files into a dataset")
    ingest.add_argument("project", metavar="NS/PROJECT")
    ingest.add_argument("dataset", metavar="DATASET")
    ingest.add_argument("files", metavar="FILES", nargs="+")
    ingest.add_argument("--data-dir", type=Path)
    ingest.add_argument(
        "--tenant", help="act as this API key's consumer (default: the open tenant)"
    )
    ingest.add_argument("--reprocess", action="store_true", help="process files already DONE again")
    ingest.set_defaults(func=cmd_ingest)

    query = sub.add_parser("query", help="hybrid search a project's RAG database")
    query.add_argument("project", metavar="NS/PROJECT")
    query.add_argument("text")
    query.add_argument("--database")
    query.add_argument("--top-k", type=int, default=5)
    query.add_argument("--strategy", choices=["hybrid", "vector", "keyword"], default=None)
    query.add_argument("--data-dir", type=Path)
    query.add_argument("--tenant")
    query.set_defaults(func=cmd_query)

    keys = sub.add_parser(
        "keys",
        help="manage consumer API keys (stored hashed in the data dir; with PASTURE_BACKEND=aws"
        " in the stack's table and usage plan)",
    )
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="make a key for a consumer; prints it once")
    create.add_argument("name", help="the consumer (tenant) the key acts as")
    listing = keys_sub.add_parser("list", help="consumers and their key ids (never the keys)")
    listing.add_argument("name", nargs="?", help="only this consumer")
    revoke = keys_sub.add_parser("revoke", help="revoke a consumer's keys, or one by its id")
    revoke.add_argument("name")
    revoke.add_argument("key_id", nargs="?", help="the key id shown by `keys list`")
    for k in (create, listing, revoke):
        k.add_argument("--data-dir", type=Path)
    keys.set_defaults(func=cmd_keys)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except PastureError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
