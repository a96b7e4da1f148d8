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

from flask import Blueprint, current_app, jsonify, request
from peewee import IntegrityError

from collector.errors import ApiError
from collector.identity.access import ensure_wallet
from collector.projects.deployer import Answer, Deployer
from collector.store.db import DATABASE_DOWN, database, locked
from collector.store.models import Project
from collector.web.api import (
    accept_fields,
    by_creator,
    integer,
    json_object,
    paginated,
    settings,
    wallet,
)
from protocol.times import format_timestamp, utcnow

bp = Blueprint("deployments", __name__, url_prefix="/deployments")
log = logging.getLogger(__name__)

STATUSES = ("pending", "processing", "success", "failed")
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
_FIELDS = {"name", "github", "creator", "url", "port", "replicas", "branch", "envVars"}
# The existing web UI's names for the same fields (the plan's app_name and github_repo).
_ALIASES = {
    "appName": "name",
    "app_name": "name",
    "githubRepo": "github",
    "github_repo": "github",
    "env_vars": "envVars",
}


def to_json(project: Project) -> dict:
    return {
        "id": project.id,
        "name": project.name,
        "url": project.url,
        "port": project.port,
        "status": project.status,
        "github": project.github,
        "branch": project.branch,
        "replicas": project.replicas,
        "creator": project.creator,
        "errorMessage": project.error_message,
        "createdAt": format_timestamp(project.created_at),
        "updatedAt": format_timestamp(project.updated_at),
    }


def repository(project: Project) -> str:
    """``owner/repo``: how the original clients and the deployer name a repository."""
    return project.github.removeprefix("https://github.com/")


def validate_name(value: object) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ApiError(
            400,
            "name must be 1 to 20 lower-case letters, digits or hyphens, "
            "starting and ending with a letter or digit",
        )
    return value


def _github(value: object) -> str:
    match = _GITHUB.fullmatch(value) if isinstance(value, str) else None
    if match is None or match["repo"] in (".", ".."):
        raise ApiError(
            400, "github must be a GitHub repository: owner/repo or https://github.com/owner/repo"
        )
    return f"https://github.com/{match['owner']}/{match['repo']}"


def _url(value: object) -> str:
    if not isinstance(value, str) or not _URL.fullmatch(value):
        raise ApiError(400, "url must be an http or https URL")
    return value


def _status(value: object) -> str:
    if value not in STATUSES:
        raise ApiError(400, f"status must be one of {', '.join(STATUSES)}")
    return value


def _branch(value: object) -> str:
    if not isinstance(value, str) or not _BRANCH.fullmatch(value):
        raise ApiError(400, "branch must be a git branch name (letters, digits and ._/-)")
    return value


def _env_vars(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ApiError(400, "envVars must be an object of NAME: value strings")
    if len(value) > MAX_ENV_VARS:
        raise ApiError(400, f"envVars may hold at most {MAX_ENV_VARS} variables")
    for key, item in value.items():
        if not _ENV_NAME.fullmatch(key):
            raise ApiError(400, f"envVars: {key!r} is not a variable name ([A-Za-z_][A-Za-z0-9_]*)")
        if not isinstance(item, str) or len(item) > MAX_ENV_VALUE:
            raise ApiError(400, f"envVars.{key} must be a string of at most {MAX_ENV_VALUE} bytes")
    return value


def deployer() -> Deployer | None:
    return current_app.extensions.get("tassium.deployer")


def _no_deployer() -> ApiError:
    return ApiError(
        422,
        "env vars go to the deployer, and this collector has none configured (deployer_url); "
        "they are never stored here",
    )


def create(document: dict, *, anonymous: bool = False) -> Project:
    """Validate and store a new deployment for its creator (who must be the caller, or the
    operator; ``anonymous``: see access.ensure_wallet); with a deployer, start its build
    (status processing) and return at once: the build's answer moves it on later."""
    fields = accept_fields(document, _FIELDS, _ALIASES, required=("name", "github", "creator"))
    name = validate_name(fields["name"])
    env_vars = _env_vars(fields["envVars"]) if fields.get("envVars") is not None else {}
    builder = deployer()
    if env_vars and builder is None:
        raise _no_deployer()
    now = utcnow()
    values = {
        "name": name,
        "github": _github(fields["github"]),
        "branch": _branch(fields.get("branch", "main")),
        "creator": wallet(fields["creator"], "creator"),
        "url": _url(fields["url"])
        if fields.get("url") is not None
        else settings().deployment_url_template.replace("{name}", name),
        "port": integer(fields.get("port", 3000), "port", 1, 65535),
        "replicas": integer(fields.get("replicas", 1), "replicas", 1, MAX_REPLICAS),
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


def _settle_build(builder: Deployer, project: Project, answer: Answer) -> None:
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


def scale(name: str, document: dict) -> Project:
    fields = accept_fields(document, {"replicas"}, required=("replicas",))
    replicas = integer(fields["replicas"], "replicas", 1, MAX_REPLICAS)
    with database.atomic():
        changed = (
            Project.update(replicas=replicas, updated_at=utcnow())
            .where(Project.name == _known_name(name))
            .execute()
        )
    if not changed:
        raise ApiError(404, f"no deployment named {name!r}")
    return find(name)


def change_env(name: str, document: dict) -> Project:
    """Hand new env vars (and optionally a port) to the deployer, which restarts the app."""
    fields = accept_fields(document, {"envVars", "port"}, {"env_vars": "envVars"})
    if fields.get("envVars") is None:
        raise ApiError(400, "envVars is required")
    env_vars = _env_vars(fields["envVars"])
    port = integer(fields["port"], "port", 1, 65535) if fields.get("port") is not None else None
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


@bp.post("")
def create_route():
    return jsonify(to_json(create(json_object()))), 201


@bp.get("")
def list_deployments():
    return jsonify(paginated(listing(), to_json))


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
def get(name: str):
    return jsonify(to_json(find(name)))


@bp.patch("/<name>/status")
def set_status(name: str):
    owned(name)
    fields = accept_fields(json_object(), {"status"})
    return jsonify(to_json(advance(name, _status(fields.get("status")))))


@bp.patch("/<name>/replicas")
def set_replicas(name: str):
    owned(name)
    return jsonify(to_json(scale(name, json_object())))


@bp.patch("/<name>/env")
def set_env(name: str):
    owned(name)
    return jsonify(to_json(change_env(name, json_object())))


@bp.delete("/<name>")
def delete(name: str):
    owned(name)
    remove(name)
    return "", 204
