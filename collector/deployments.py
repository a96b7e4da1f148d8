"""Deployments (the plan's projects): create, read, list, delete, and the status machine
pending → processing → success | failed."""

import re

from flask import Blueprint, jsonify, request
from peewee import IntegrityError

from collector.api import (
    ApiError,
    accept_fields,
    by_creator,
    integer,
    json_object,
    paginated,
    require_api_token,
    settings,
    wallet,
)
from collector.db import database, locked
from collector.models import Project
from protocol.times import format_timestamp

bp = Blueprint("deployments", __name__, url_prefix="/deployments")

STATUSES = ("pending", "processing", "success", "failed")
TRANSITIONS = {"pending": ("processing",), "processing": ("success", "failed")}
MAX_REPLICAS = 100

# A DNS label of at most 20 characters, since the name becomes the deployment's host name.
_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,18}[a-z0-9])?")
_GITHUB = re.compile(
    r"(?:https://github\.com/)?"
    r"(?P<owner>[A-Za-z0-9](?:[A-Za-z0-9-]{0,38}))/(?P<repo>[A-Za-z0-9._-]{1,100}?)(?:\.git)?/?"
)
# No white space or control characters: PostgreSQL refuses NUL, and a URL has no use for them.
_URL = re.compile(r"https?://[^\s/$.?#\x00-\x1f\x7f][^\s\x00-\x1f\x7f]{0,2000}")
_FIELDS = {"name", "github", "creator", "url", "port", "replicas"}
# The existing web UI's names for the same fields (the plan's app_name and github_repo).
_ALIASES = {"appName": "name", "app_name": "name", "githubRepo": "github", "github_repo": "github"}


def to_json(project: Project) -> dict:
    return {
        "id": project.id,
        "name": project.name,
        "url": project.url,
        "port": project.port,
        "status": project.status,
        "github": project.github,
        "replicas": project.replicas,
        "creator": project.creator,
        "createdAt": format_timestamp(project.created_at),
    }


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


@bp.post("")
@require_api_token
def create():
    fields = accept_fields(json_object(), _FIELDS, _ALIASES, required=("name", "github", "creator"))
    name = validate_name(fields["name"])
    values = {
        "name": name,
        "github": _github(fields["github"]),
        "creator": wallet(fields["creator"], "creator"),
        "url": _url(fields["url"])
        if fields.get("url") is not None
        else settings().deployment_url_template.replace("{name}", name),
        "port": integer(fields.get("port", 3000), "port", 1, 65535),
        "replicas": integer(fields.get("replicas", 1), "replicas", 1, MAX_REPLICAS),
    }
    try:
        with database.atomic():
            project = Project.create(**values)
    except IntegrityError:
        raise ApiError(409, f"a deployment named {name!r} already exists") from None
    return jsonify(to_json(Project.get_by_id(project.id))), 201


@bp.get("")
def list_deployments():
    query = Project.select().order_by(Project.created_at.desc(), Project.id.desc())
    query = by_creator(query, Project.creator)
    if "status" in request.args:
        query = query.where(Project.status == _status(request.args["status"]))
    return jsonify(paginated(query, to_json))


def _get(name: str) -> Project:
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
    return jsonify(to_json(_get(name)))


@bp.patch("/<name>/status")
@require_api_token
def set_status(name: str):
    fields = accept_fields(json_object(), {"status"})
    new = _status(fields.get("status"))
    with database.atomic():
        project = locked(Project.select().where(Project.name == _known_name(name))).first()
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
        project.save()
    return jsonify(to_json(project))


@bp.delete("/<name>")
@require_api_token
def delete(name: str):
    deleted = Project.delete().where(Project.name == _known_name(name)).execute()
    if not deleted:
        raise ApiError(404, f"no deployment named {name!r}")
    return "", 204
