"""API Gateway events as a REST API (payload format 1.0) delivers them, for driving the Lambda
handlers in process: proxy-integration events with an authorizer's context, REQUEST authorizer
events, and a Lambda context object.

Shapes follow AWS's documented examples ("Input format of a Lambda function for proxy
integration", "Input to an API Gateway Lambda authorizer"): headers as the client wrote them
plus the ones API Gateway adds, both single- and multi-value maps, the proxy resource the stack
declares for the group's prefix, and a request context naming the stage, the API key (key
source AUTHORIZER: the authorizer's usageIdentifierKey) and the authorizer's context.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
import uuid
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

from pasture.api.groups import GROUPS

REGION = "us-east-1"
ACCOUNT = "123456789012"
API_ID = "a1b2c3d4e5"
STAGE = "prod"
HOST = f"{API_ID}.execute-api.{REGION}.amazonaws.com"
SOURCE_IP = "198.51.100.7"


def method_arn(method: str, path: str) -> str:
    return f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{API_ID}/{STAGE}/{method}{path}"


def resource_for(path: str) -> tuple[str, dict[str, str] | None]:
    """The API Gateway resource that serves `path` (the longest group prefix that matches,
    with a `{proxy+}` child below it) and the path parameters it binds."""
    parts = [p for p in path.split("/") if p]
    best: tuple[int, str, dict[str, str]] | None = None
    for g in GROUPS:
        for prefix in g.prefixes:
            tpl = [p for p in prefix.split("/") if p]
            if len(tpl) > len(parts):
                continue
            params: dict[str, str] = {}
            for t, p in zip(tpl, parts, strict=False):
                if t.startswith("{") and t.endswith("}"):
                    params[t[1:-1]] = p
                elif t != p:
                    break
            else:
                if best is None or len(tpl) > best[0]:
                    best = (len(tpl), prefix, params)
    if best is None:
        return "/{proxy+}", {"proxy": "/".join(parts)}
    n, prefix, params = best
    if n == len(parts):
        return prefix, params or None
    rest = "/".join(parts[n:])
    return prefix.rstrip("/") + "/{proxy+}", {**params, "proxy": rest}


def _headers(extra: dict[str, str] | None, body: bytes | None) -> dict[str, str]:
    # What API Gateway (through its CloudFront edge) adds to every request.
    h = {
        "Accept": "*/*",
        "Host": HOST,
        "User-Agent": "pasture-tests/1.0",
        "CloudFront-Forwarded-Proto": "https",
        "CloudFront-Is-Desktop-Viewer": "true",
        "CloudFront-Viewer-Country": "US",
        "Via": "2.0 0f3f1c1bdc1f21e3.cloudfront.net (CloudFront)",
        "X-Amz-Cf-Id": base64.urlsafe_b64encode(secrets.token_bytes(30)).decode(),
        "X-Amzn-Trace-Id": f"Root=1-{int(time.time()):08x}-{secrets.token_hex(12)}",
        "X-Forwarded-For": f"{SOURCE_IP}, 130.176.0.1",
        "X-Forwarded-Port": "443",
        "X-Forwarded-Proto": "https",
    }
    if body is not None:
        h["Content-Length"] = str(len(body))
    h.update(extra or {})
    return h


def rest_event(
    method: str,
    path: str,
    *,
    tenant: str | None = None,
    api_key: str | None = None,
    headers: dict[str, str] | None = None,
    query: dict[str, str | list[str]] | None = None,
    json_body: Any = None,
    body: bytes | str | None = None,
    binary: bool = False,
    authorizer: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A REST API Lambda-proxy event. `tenant`: the context our authorizer returned (None: a
    route with no authorizer). `binary`: the body arrives base64-encoded, as API Gateway sends
    a body whose content type is one of the API's binary media types."""
    raw: bytes | None
    if json_body is not None:
        raw = json.dumps(json_body).encode()
        headers = {"Content-Type": "application/json", **(headers or {})}
    elif isinstance(body, str):
        raw = body.encode()
    else:
        raw = body
    h = _headers(headers, raw)
    multi_h = {k: [v] for k, v in h.items()}
    q_single = None
    q_multi = None
    if query:
        q_multi = {k: (v if isinstance(v, list) else [v]) for k, v in query.items()}
        q_single = {k: vs[-1] for k, vs in q_multi.items()}  # the last value, as API Gateway
    resource, path_params = resource_for(path)
    now = time.time()
    auth: dict[str, Any] | None = None
    if authorizer is not None:
        auth = authorizer
    elif tenant is not None:
        auth = {"principalId": tenant, "tenant": tenant, "integrationLatency": 12}
    request_id = str(uuid.uuid4())
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": h,
        "multiValueHeaders": multi_h,
        "queryStringParameters": q_single,
        "multiValueQueryStringParameters": q_multi,
        "pathParameters": path_params,
        "stageVariables": None,
        "requestContext": {
            "resourceId": secrets.token_hex(3),
            "resourcePath": resource,
            "httpMethod": method,
            "extendedRequestId": base64.b64encode(secrets.token_bytes(12)).decode(),
            "requestTime": formatdate(now, usegmt=True),
            "path": f"/{STAGE}{path}",
            "accountId": ACCOUNT,
            "protocol": "HTTP/1.1",
            "stage": STAGE,
            "domainPrefix": API_ID,
            "requestTimeEpoch": int(now * 1000),
            "requestId": request_id,
            "identity": {
                "cognitoIdentityPoolId": None,
                "accountId": None,
                "cognitoIdentityId": None,
                "caller": None,
                "sourceIp": SOURCE_IP,
                "principalOrgId": None,
                "accessKey": None,
                "cognitoAuthenticationType": None,
                "cognitoAuthenticationProvider": None,
                "userArn": None,
                "userAgent": h.get("User-Agent"),
                "user": None,
                "apiKey": api_key,
                "apiKeyId": "k" + secrets.token_hex(4) if api_key else None,
                "clientCert": None,
            },
            "domainName": HOST,
            "apiId": API_ID,
            **({"authorizer": auth} if auth is not None else {}),
        },
        "body": (
            None
            if raw is None
            else base64.b64encode(raw).decode()
            if binary
            else raw.decode("utf-8")
        ),
        "isBase64Encoded": bool(binary and raw is not None),
    }


def authorizer_event(
    headers: dict[str, str] | None = None,
    *,
    method: str = "GET",
    path: str = "/v1/projects/acme",
    multi_value_headers: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    """A REQUEST authorizer's input: the method ARN and the request's parameters."""
    h = _headers(headers, None)
    resource, path_params = resource_for(path)
    return {
        "type": "REQUEST",
        "methodArn": method_arn(method, path),
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": h,
        "multiValueHeaders": multi_value_headers or {k: [v] for k, v in h.items()},
        "queryStringParameters": {},
        "multiValueQueryStringParameters": {},
        "pathParameters": path_params or {},
        "stageVariables": {},
        "requestContext": {
            "path": f"/{STAGE}{path}",
            "accountId": ACCOUNT,
            "resourceId": secrets.token_hex(3),
            "stage": STAGE,
            "requestId": str(uuid.uuid4()),
            "identity": {"apiKey": None, "sourceIp": SOURCE_IP, "clientCert": None},
            "resourcePath": resource,
            "httpMethod": method,
            "apiId": API_ID,
        },
    }


def multipart(
    files: list[tuple[str, str, bytes, str]], fields: dict[str, str] | None = None
) -> tuple[bytes, str]:
    """A multipart/form-data body: files as (field, filename, data, content type)."""
    boundary = "----pasture" + secrets.token_hex(12)
    out = bytearray()
    for name, value in (fields or {}).items():
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        out += value.encode() + b"\r\n"
    for name, filename, data, ctype in files:
        out += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}";'
            f' filename="{filename}"\r\nContent-Type: {ctype}\r\n\r\n'
        ).encode()
        out += data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


@dataclass
class LambdaContext:
    """What the Lambda runtime passes as `context` (the attributes Powertools reads)."""

    function_name: str = "pasture-test"
    memory_limit_in_mb: int = 1024
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/pasture-test"
    log_stream_name: str = "2025/01/01/[$LATEST]0123456789abcdef"
    function_version: str = "$LATEST"

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


@dataclass(frozen=True)
class Reply:
    """A proxy integration's answer, decoded."""

    status: int
    headers: dict[str, str]
    body: bytes

    @classmethod
    def of(cls, response: dict[str, Any]) -> Reply:
        raw = response.get("body") or ""
        data = base64.b64decode(raw) if response.get("isBase64Encoded") else raw.encode()
        headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
        for k, vs in (response.get("multiValueHeaders") or {}).items():
            headers.setdefault(k.lower(), ", ".join(vs))
        return cls(int(response["statusCode"]), headers, data)

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")
