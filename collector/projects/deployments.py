"""Deployments (the plan's projects): create, read, list, scale, change env vars, delete,
and the status machine pending → processing → success | failed.

With a deployer configured (collector/projects/deployer.py), creating a deployment starts its
build and the deployer's answer drives the status; without one, ``PATCH …/status`` does. The
functions here are what both our routes and the ``/api/v1`` dialect (collector/pages/ui_v1.py)
call.
"""

import logging
import re
from datetime import datetime, timedelta
from typing import Annotated, Literal, get_args

from flask import Blueprint, current_app, request
from msgspec import Meta
from peewee import IntegrityError

from collector.errors import ApiError
from collector.identity.access import ensure_wallet
from collector.projects import deployer as deployers
from collector.projects.deployer import Deployer
from collector.store.db import DATABASE_DOWN, database, locked
from collector.store.models import Project
from collector.web.api import by_creator, paginated, settings, wallet
from collector.web.schema import (
    OWNER,
    PAGE,
    Answer,
    Body,
    Page,
    Reply,
    Timestamp,
    Wallet,
    answer,
    decode,
    operation,
    path_parameter,
    query,
    refusal,
    spelled,
    wallet_ref,
    whole_match,
    whole_number,
)
from protocol.times import format_timestamp, utcnow

bp = Blueprint("deployments", __name__, url_prefix="/deployments")
log = logging.getLogger(__name__)

Status = Literal["pending", "processing", "success", "failed"]
STATUSES: tuple[str, ...] = get_args(Status)
TRANSITIONS = {"pending": ("processing",), "processing": ("success", "failed")}
MAX_REPLICAS = 10
MAX_ENV_VARS = 200
MAX_ENV_VALUE = 32 * 1024
# A git branch name: no leading dash or slash (never an option), no "..", no control characters.
_BRANCH = re.compile(r"(?!-)(?!/)(?!.*\.\.)[A-Za-z0-9._/-]{1,255}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")

# A DNS label of at most 20 characters, since the name becomes the deployment's host name.
_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,18}[a-z0-9])?")
_GITHUB = re.compile(
    r"(?:https://github\.com/)?"
    r"(?P<owner>[A-Za-z0-9](?:[A-Za-z0-9-]{0,38}))/(?P<repo>[A-Za-z0-9._-]{1,100}?)(?:\.git)?/?"
)
# No white space or control characters: PostgreSQL refuses NUL, and a URL has no use for them.
_URL = re.compile(r"https?://[^\s/$.?#\x00-\x1f\x7f][^\s\x00-\x1f\x7f]{0,2000}")

# The refusals name the field as our API spells it, whichever of the web UI's names was sent.
_NOT_A_NAME = (
    "name must be 1 to 20 lower-case letters, digits or hyphens, "
    "starting and ending with a letter or digit"
)
_NOT_GITHUB = "github must be a GitHub repository: owner/repo or https://github.com/owner/repo"
_NOT_A_STATUS = f"status must be one of {', '.join(STATUSES)}"

Name = Annotated[
    str,
    Meta(
        pattern=whole_match(_NAME),
        description="A DNS label of 1 to 20 lower-case characters",
        extra=refusal(_NOT_A_NAME),
    ),
]
GitHub = Annotated[
    str,
    Meta(
        pattern=whole_match(_GITHUB),
        description="owner/repo or https://github.com/owner/repo; answered as the URL",
        extra=refusal(_NOT_GITHUB),
    ),
]
Url = Annotated[
    str, Meta(pattern=whole_match(_URL), extra=refusal("url must be an http or https URL"))
]
Branch = Annotated[
    str,
    Meta(
        pattern=whole_match(_BRANCH),
        extra=refusal("branch must be a git branch name (letters, digits and ._/-)"),
    ),
]
Port = whole_number(1, 65535)
Replicas = whole_number(1, MAX_REPLICAS)
EnvVars = Annotated[
    dict[
        Annotated[
            str,
            Meta(
                pattern=whole_match(_ENV_NAME),
                extra=refusal(
                    "{where}: every name must be a variable name ([A-Za-z_][A-Za-z0-9_]*, "
                    "at most 128 characters)"
                ),
            ),
        ],
        Annotated[
            str,
            Meta(
                max_length=MAX_ENV_VALUE,
                extra=refusal(f"{{where}} must be a string of at most {MAX_ENV_VALUE} characters"),
            ),
        ],
    ],
    Meta(
        max_length=MAX_ENV_VARS,
        description="Passed to the deployer (deployer_url), never stored; a collector "
        "without a deployer answers 422",
        extra=refusal(
            "{where} must be an object of NAME: value strings",
            max_length=f"{{where}} may hold at most {MAX_ENV_VARS} variables",
        ),
    ),
]


class NewDeployment(Body, kw_only=True):
    """appName/app_name, githubRepo/github_repo and env_vars are the web UI's names for
    name, github and envVars; one spelling of each of name and github is required. Unknown
    fields are refused (400). With a deployer configured the deployment is answered
    processing, and its build moves it to success or failed."""

    name: Name | None = None
    appName: Name | None = None
    app_name: Name | None = None
    github: GitHub | None = None
    githubRepo: GitHub | None = None
    github_repo: GitHub | None = None
    creator: Wallet
    url: Url | None = None
    port: Port = 3000
    replicas: Replicas = 1
    branch: Branch = "main"
    envVars: EnvVars | None = None
    env_vars: EnvVars | None = None


class StatusChange(Body):
    status: Annotated[Status, Meta(extra=refusal(_NOT_A_STATUS))]


class ReplicasChange(Body):
    replicas: Replicas


class EnvChange(Body):
    """The deployer restarts the app with these env vars (and port); env_vars is the web
    UI's name for envVars, one of which is required."""

    envVars: EnvVars | None = None
    env_vars: EnvVars | None = None
    port: Port | None = None


class Deployment(Answer):
    # Named as answered, so the dashboard's template reads the same names as clients do.
    id: int
    name: Name
    url: str
    port: Port
    status: Status
    github: str
    branch: str
    replicas: Replicas
    creator: Wallet
    errorMessage: Annotated[str | None, Meta(description="Why the deployer failed, in its words")]
    createdAt: Timestamp
    updatedAt: Timestamp


class DeploymentPage(Page[Deployment]):
    pass


def to_json(project: Project) -> Deployment:
    """A deployment as our API answers it (and the dashboard shows it)."""
    return Deployment(
        id=project.id,
        name=project.name,
        url=project.url,
        port=project.port,
        status=project.status,
        github=project.github,
        branch=project.branch,
        replicas=project.replicas,
        creator=project.creator,
        errorMessage=project.error_message,
        createdAt=format_timestamp(project.created_at),
        updatedAt=format_timestamp(project.updated_at),
    )


def repository(project: Project) -> str:
    """``owner/repo``: how the original clients and the deployer name a repository."""
    return project.github.removeprefix("https://github.com/")


def _github(value: str) -> str:
    """The repository's URL; the pattern cannot say that ``.`` and ``..`` are no repository."""
    match = _GITHUB.fullmatch(value)
    if match is None or match["repo"] in (".", ".."):
        raise ApiError(400, _NOT_GITHUB)
    return f"https://github.com/{match['owner']}/{match['repo']}"


def _status(value: str) -> str:
    """A status in the query (a body's is its type's)."""
    if value not in STATUSES:
        raise ApiError(400, _NOT_A_STATUS)
    return value


def deployer() -> Deployer | None:
    return current_app.extensions.get("tassium.deployer")


def _no_deployer() -> ApiError:
    return ApiError(
        422,
        "env vars go to the deployer, and this collector has none configured (deployer_url); "
        "they are never stored here",
    )


def create(body: NewDeployment, *, anonymous: bool = False) -> Project:
    """Store a new deployment for its creator (who must be the caller, or the operator;
    ``anonymous``: see access.ensure_wallet); with a deployer, start its build (status
    processing) and return at once: the build's answer moves it on later."""
    name = spelled(body, "name", "appName", "app_name", required=True)
    github = spelled(body, "github", "githubRepo", "github_repo", required=True)
    env_vars = spelled(body, "envVars", "env_vars") or {}
    builder = deployer()
    if env_vars and builder is None:
        raise _no_deployer()
    now = utcnow()
    values = {
        "name": name,
        "github": _github(github),
        "branch": body.branch,
        "creator": wallet(body.creator, "creator"),
        "url": body.url or settings().deployment_url_template.replace("{name}", name),
        "port": body.port,
        "replicas": body.replicas,
        "created_at": now,
        "updated_at": now,
    }
    ensure_wallet(values["creator"], anonymous=anonymous)
    if builder is not None:
        _ensure_buildable(builder, values["github"])
    try:
        with database.atomic():
            project = Project.create(**values)
    except IntegrityError:
        raise ApiError(409, f"a deployment named {name!r} already exists") from None
    if builder is None:
        return Project.get_by_id(project.id)
    project = advance(name, "processing")
    builder.in_background(lambda: build(builder, project, env_vars), name)
    return project


def _ensure_buildable(builder: Deployer, github: str) -> None:
    """Refuse, before anything is stored, a repository the operator does not let the
    deployer build."""
    refusal = builder.refusal(github)
    if refusal is not None:
        raise ApiError(400, f"github: {refusal}")


def build(builder: Deployer, project: Project, env_vars: dict[str, str]) -> None:
    """Send a stored deployment (processing) to the deployer and record its answer. The
    deployer sends only a repository still allowed, and its message comes back with the env
    var values redacted (collector/projects/deployer.py): what is stored here may be shown to
    anyone."""
    answer = builder.deploy(project.name, project.github, project.branch, project.port, env_vars)
    try:
        with database.connection_context():
            _settle_build(builder, project, answer)
    except DATABASE_DOWN:
        log.exception("deployer answer for %s lost: database unavailable", project.name)


def _settle_build(builder: Deployer, project: Project, answer: deployers.Answer) -> None:
    try:
        if answer.ok:
            changes = {"url": answer.url} if answer.url and _URL.fullmatch(answer.url) else {}
            advance(project.name, "success", project.id, error_message=None, **changes)
        else:
            advance(project.name, "failed", project.id, error_message=answer.message)
        return
    except ApiError as exc:  # deleted or moved on meanwhile: the answer no longer applies
        log.info("deployer answer for %s not applied: %s", project.name, exc.message)
        gone = exc.status == 404
    # Deleted while it built: the deployer had no app to remove then, and runs one now that
    # nothing accounts for (unless a new deployment took the name, and so owns the app).
    if answer.ok and gone and not Project.select().where(Project.name == project.name).exists():
        removed = builder.remove(project.name)
        if not removed.ok and removed.status_code != 404:
            log.warning(
                "the deployer still runs %s, deleted here: %s", project.name, removed.message
            )


def advance(name: str, new: str, project_id: int | None = None, **changes: object) -> Project:
    """The one status flow: move a deployment to ``new`` if its current status allows it.
    With ``project_id``, only that very row: a build's answer must not reach a new
    deployment that took the name of one deleted while it built."""
    query = Project.select().where(Project.name == _known_name(name))
    if project_id is not None:
        query = query.where(Project.id == project_id)
    with database.atomic():
        project = locked(query).first()
        if project is None:
            raise ApiError(404, f"no deployment named {name!r}")
        allowed = TRANSITIONS.get(project.status, ())
        if new not in allowed:
            raise ApiError(
                409,
                f"cannot move deployment {name!r} from {project.status} to {new}; allowed: "
                + (", ".join(allowed) if allowed else f"none, {project.status} is final"),
            )
        project.status = new
        project.updated_at = utcnow()
        for field, value in changes.items():
            setattr(project, field, value)
        project.save()
    return project


# How long past the build time-out a deployment may stay processing before it counts as lost.
LOST_BUILD_MARGIN = timedelta(minutes=1)
LOST_BUILD = (
    "the collector stopped before the deployer answered this build, so how it ended is not "
    "known; deploy it again"
)


def fail_lost_builds(build_timeout: timedelta, now: datetime) -> int:
    """Fail the deployments still processing well past the build time-out: the collector
    process that waited for their build stopped (the wait lives in that process alone).
    processing → failed is a move the status flow allows; returns how many."""
    cutoff = now - build_timeout - LOST_BUILD_MARGIN
    return (
        Project.update(status="failed", error_message=LOST_BUILD, updated_at=now)
        .where((Project.status == "processing") & (Project.updated_at < cutoff))
        .execute()
    )


def scale(name: str, body: ReplicasChange) -> Project:
    with database.atomic():
        changed = (
            Project.update(replicas=body.replicas, updated_at=utcnow())
            .where(Project.name == _known_name(name))
            .execute()
        )
    if not changed:
        raise ApiError(404, f"no deployment named {name!r}")
    return find(name)


def change_env(name: str, body: EnvChange) -> Project:
    """Hand new env vars (and optionally a port) to the deployer, which restarts the app."""
    env_vars = spelled(body, "envVars", "env_vars", required=True)
    port = body.port
    project = find(name)
    builder = deployer()
    if builder is None:
        raise _no_deployer()
    answer = builder.update_env(project.name, env_vars, port)
    if not answer.ok:
        raise ApiError(502, f"the deployer refused the env vars: {answer.message}")
    if port is not None:
        Project.update(port=port, updated_at=utcnow()).where(Project.id == project.id).execute()
    else:
        Project.update(updated_at=utcnow()).where(Project.id == project.id).execute()
    return find(name)


def remove(name: str) -> None:
    """Delete a deployment; with a deployer, only once the deployer has removed the app (or
    never had it), so that nothing keeps running unaccounted for."""
    project = find(name)
    builder = deployer()
    if builder is not None:
        answer = builder.remove(project.name)
        if not answer.ok and answer.status_code != 404:
            raise ApiError(502, f"the deployer did not remove {name!r}: {answer.message}")
    Project.delete().where(Project.id == project.id).execute()


def listing():
    query = Project.select().order_by(Project.created_at.desc(), Project.id.desc())
    query = by_creator(query, Project.creator)
    if "status" in request.args:
        query = query.where(Project.status == _status(request.args["status"]))
    return query


def owned(name: str, *, anonymous: bool = False) -> Project:
    """The deployment ``name``, once the caller may change it: its creator or the operator."""
    project = find(name)
    ensure_wallet(project.creator, anonymous=anonymous)
    return project


# Every route reads the database; a body is read and parsed, and a write is rate-limited
# (collector/web/ratelimits.py); a name holding "/" may name another route (405).
_WRITE = (400, 408, 413, 503)  # and a 429 (collector/pages/openapi.py)
_NAMED = path_parameter("name", {"type": "string", "minLength": 1})


@bp.post("")
@operation(
    summary="Create a deployment (pending; processing when a deployer builds it)",
    security=OWNER,
    body=NewDeployment,
    replies={201: Reply("Created", Deployment)},
    errors=(*_WRITE, 401, 403, 409, 422),
)
def create_route():
    return answer(to_json(create(decode(NewDeployment))), 201)


@bp.get("")
@operation(
    summary="Deployments, newest first",
    parameters=(
        query("creator", wallet_ref(), "only this creator's entries"),
        query("status", {"type": "string", "enum": list(STATUSES)}, "only in this status"),
        *PAGE,
    ),
    replies={200: Reply("A page", DeploymentPage)},
    errors=(400, 503),
)
def list_deployments():
    return answer(DeploymentPage(**paginated(listing(), to_json)))


def find(name: str) -> Project:
    project = Project.get_or_none(Project.name == _known_name(name))
    if project is None:
        raise ApiError(404, f"no deployment named {name!r}")
    return project


def _known_name(name: str) -> str:
    """A name from the path: one that could never have been created is simply unknown (and
    never reaches SQL, where PostgreSQL would refuse a NUL in it)."""
    if not _NAME.fullmatch(name):
        raise ApiError(404, f"no deployment named {name!r}")
    return name


@bp.get("/<name>")
@operation(
    summary="One deployment",
    parameters=(_NAMED,),
    replies={200: Reply("The deployment", Deployment)},
    errors=(404, 405, 503),
)
def get(name: str):
    return answer(to_json(find(name)))


@bp.patch("/<name>/status")
@operation(
    summary="Move a deployment: pending → processing → success | failed",
    security=OWNER,
    parameters=(_NAMED,),
    body=StatusChange,
    replies={200: Reply("Moved", Deployment)},
    errors=(*_WRITE, 401, 403, 404, 405, 409),
)
def set_status(name: str):
    owned(name)
    return answer(to_json(advance(name, decode(StatusChange).status)))


@bp.patch("/<name>/replicas")
@operation(
    summary=f"Scale a deployment (1 to {MAX_REPLICAS} replicas)",
    security=OWNER,
    parameters=(_NAMED,),
    body=ReplicasChange,
    replies={200: Reply("Scaled", Deployment)},
    errors=(*_WRITE, 401, 403, 404, 405),
)
def set_replicas(name: str):
    owned(name)
    return answer(to_json(scale(name, decode(ReplicasChange))))


@bp.patch("/<name>/env")
@operation(
    summary="Restart a deployment with new env vars, through the deployer",
    security=OWNER,
    parameters=(_NAMED,),
    body=EnvChange,
    replies={200: Reply("The deployer took them", Deployment)},
    errors=(*_WRITE, 401, 403, 404, 405, 422, 502),
)
def set_env(name: str):
    owned(name)
    return answer(to_json(change_env(name, decode(EnvChange))))


@bp.delete("/<name>")
@operation(
    summary="Delete a deployment",
    security=OWNER,
    parameters=(_NAMED,),
    replies={204: Reply("Deleted")},
    errors=(401, 403, 404, 405, 502, 503),
)
def delete(name: str):
    owned(name)
    remove(name)
    return "", 204
