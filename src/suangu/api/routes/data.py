"""Data objects: buyers' files held by the exchange, encrypted at rest.

* ``POST /data?name=...`` uploads the request body (raw bytes) as a new object of the caller
  (a buyer); ``sha256=`` (optional) makes the exchange check the bytes it got. The same bytes
  under the same name again return the first object (200 instead of 201).
* ``GET /data`` lists the caller's objects (operators and auditors: everyone's), oldest first.
* ``GET /data/{id}`` is an object's metadata; ``GET /data/{id}/content`` its bytes, for its
  owner only (auditors read metadata, never content; a provider reads a lease's inputs with
  a download grant, see :mod:`suangu.api.routes.grants`). Every download is recorded.

Another member's object is a 404, as for orders: the answer never says that it exists.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from suangu.api import pagination
from suangu.api.auth import Buyer, Member, Principal
from suangu.api.context import ApiContext
from suangu.api.errors import Forbidden, PayloadTooLarge
from suangu.api.idempotency import fingerprint, run_write
from suangu.api.routes._common import Ctx, Cursor, IdemKey, Limit
from suangu.core.errors import ValidationError
from suangu.store.dataobjects import DataEvents, DataObject, DataObjects, object_id
from suangu.store.errors import NotFound
from suangu.store.models import DataEventKind
from suangu.store.objects import ObjectStore, app_store, sha256_hex

router = APIRouter(tags=["data"])

#: Object names: 1-255 printable characters (no control characters).
NAME_PATTERN = r"^[^\x00-\x1f\x7f]{1,255}$"
Sha256 = Annotated[str, Query(pattern=r"^[0-9a-f]{64}$", description="sha256 (hex) to check")]


def objects(request: Request, ctx: ApiContext) -> ObjectStore:
    """The app's object store (built from the environment on first use)."""
    url = ctx.db.engine.url.render_as_string(hide_password=True)
    return app_store(request.app.state, url)


def data_out(o: DataObject) -> dict[str, Any]:
    return {
        "id": o.id,
        "owner_id": o.owner_id,
        "name": o.name,
        "sha256": o.sha256,
        "size": o.size,
        "created_at": o.created_at,
        "lease_id": o.lease_id,
    }


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(
            f"{declared} bytes is more than the {limit} one object may hold",
            field="body",
            fix="split the data, or give the order a URI input instead of an exchange object",
        )
    buf = bytearray()
    async for chunk in request.stream():
        buf += chunk
        if len(buf) > limit:
            raise PayloadTooLarge(
                f"more than the {limit} bytes one object may hold",
                field="body",
                fix="split the data, or give the order a URI input instead",
            )
    return bytes(buf)


async def read_upload(
    request: Request, store: ObjectStore, name: str, sha256: str | None
) -> tuple[bytes, str, str]:
    """An upload's bytes, their sha256 (checked against ``sha256`` when the caller gave one)
    and the request's idempotency fingerprint."""
    data = await read_body(request, store.max_bytes)
    sha = await run_in_threadpool(sha256_hex, data)
    if sha256 is not None and sha != sha256:
        raise ValidationError(
            f"the body's sha256 is {sha}, not {sha256}",
            field="query.sha256",
            fix="the upload was altered on its way: send it again",
        )
    return data, sha, fingerprint("POST", request.url.path, {"name": name, "sha256": sha})


def store_object(
    ctx: ApiContext,
    store: ObjectStore,
    who: Principal,
    key: str | None,
    digest: str,
    owner_id: str,
    name: str,
    data: bytes,
    sha: str,
    lease_id: str | None = None,
    extra: Any = None,
) -> JSONResponse:
    """Seal and store the bytes (unless the same object exists), then record the object in
    one write transaction; ``extra(session, object)`` runs in that transaction too."""
    oid = object_id(owner_id, name, sha)
    with ctx.db.session_scope(write=False) as s:
        exists = DataObjects(s).find(oid) is not None
    sealed = None if exists else store.put(oid, data)
    now = ctx.now()

    def work(s: Session) -> tuple[int, Any]:
        repo = DataObjects(s)
        row = repo.find(oid)
        if row is not None or sealed is None:
            found = repo.get(oid)
            if extra is not None:
                extra(s, found, False)
            return 200, data_out(found)
        made = repo.add(oid, owner_id, name, sha, len(data), sealed, now, lease_id)
        if extra is not None:
            extra(s, made, True)
        return 201, data_out(made)

    return run_write(ctx, who, key, digest, work)


#: ``POST`` of bytes that are already stored under the same owner and name answers 200.
SAME_OBJECT: dict[int | str, dict[str, Any]] = {
    200: {"description": "The same object (owner, name and bytes) exists already"}
}


@router.post("/data", status_code=201, responses=SAME_OBJECT)
async def put_data(
    request: Request,
    who: Buyer,
    ctx: Ctx,
    name: Annotated[str, Query(pattern=NAME_PATTERN, description="The object's name")],
    sha256: Sha256 | None = None,
    key: IdemKey = None,
) -> JSONResponse:
    """Upload the body's bytes as a new data object of the caller (a buyer)."""
    store = objects(request, ctx)
    data, sha, digest = await read_upload(request, store, name, sha256)
    return await run_in_threadpool(
        store_object, ctx, store, who, key, digest, who.member_id, name, data, sha
    )


@router.get("/data")
def list_data(
    request: Request, who: Member, ctx: Ctx, limit: Limit = 50, cursor: Cursor = None
) -> dict[str, Any]:
    """The caller's data objects, oldest first (operators and auditors: every member's)."""
    with ctx.db.session_scope(write=False) as s:
        try:
            pg = DataObjects(s).page(
                None if who.sees_all else who.member_id, limit=limit, cursor=cursor
            )
        except ValidationError as err:
            raise ValidationError(err.message, field=f"query.{err.field}", fix=err.fix) from None
    return pagination.body(request, [data_out(o) for o in pg.items], pg.next_cursor)


def visible(s: Session, who: Principal, oid: str) -> DataObject:
    try:
        return DataObjects(s).get(oid, None if who.sees_all else who.member_id, "path.object_id")
    except NotFound:
        raise NotFound(
            f"no data object {oid!r}", field="path.object_id", fix="list your objects"
        ) from None


@router.get("/data/{object_id}")
def get_data(object_id: str, who: Member, ctx: Ctx) -> dict[str, Any]:
    """An object's metadata (its owner, operators and auditors)."""
    with ctx.db.session_scope(write=False) as s:
        return data_out(visible(s, who, object_id))


def content_response(o: DataObject, data: bytes) -> Response:
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in o.name)[-100:] or "object"
    return Response(
        data,
        media_type="application/octet-stream",
        headers={
            "X-Suangu-Sha256": o.sha256,
            "Content-Disposition": f'attachment; filename="{safe}"',
        },
    )


@router.get("/data/{object_id}/content", response_class=Response)
def get_content(
    object_id: str,
    request: Request,
    who: Member,
    ctx: Ctx,
    grant: Annotated[
        str | None,
        Header(
            alias="X-Suangu-Grant",
            max_length=200,
            description="A download grant of a lease's input (its provider's agent)",
        ),
    ] = None,
) -> Response:
    """An object's bytes, for its owner, or for the provider holding a download grant for it
    (verified against its sha256 before they are sent). Every download is recorded."""
    from suangu.api.routes.grants import grant_download

    store = objects(request, ctx)
    now = ctx.now()
    grant_id = lease_id = None
    with ctx.db.session_scope(write=False) as s:
        if grant is not None:
            o, grant_id, lease_id = grant_download(s, ctx, who, object_id, grant, now)
        else:
            o = visible(s, who, object_id)
            if o.owner_id != who.member_id:
                raise Forbidden(
                    f"a {who.role} reads the metadata of other members' objects, not their bytes",
                    field="header.Authorization",
                    fix="ask the owner; providers read a lease's inputs with a download grant",
                )
        data = DataObjects(s).read(store, o.id)
    ctx.db.transaction(
        lambda s: DataEvents(s).record(
            DataEventKind.DOWNLOAD, o, who.member_id, now, lease_id, grant_id
        )
    )
    return content_response(o, data)
