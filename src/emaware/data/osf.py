"""Find a file of an OSF project (e.g. osf.io/reusb) through OSF's public JSON:API, by walking its folders."""

from __future__ import annotations

from typing import Any, Callable

from .. import UserError

OSF_API = "https://api.osf.io/v2"


def resolve(name: str, osf: dict, get_json: Callable[[str], Any]) -> tuple[str, str | None]:
    """Download link and OSF's published sha256 (if any) of `osf.path` in project `osf.project`'s storage."""
    project, path = osf.get("project"), osf.get("path")
    if not project or not path:
        raise UserError(
            f"datasets.{name}.osf needs `project` and `path` (the file's path in the project's OSF Storage, "
            f"as shown at https://osf.io/{project or '<project>'}/files)"
        )
    listing = f"{osf.get('api', OSF_API).rstrip('/')}/nodes/{project}/files/osfstorage/"
    parts = [part for part in path.split("/") if part]
    try:
        for depth, part in enumerate(parts, 1):
            entry = _find_in_listing(listing, part, get_json)
            kind = entry["attributes"]["kind"] if entry else None
            wanted = "file" if depth == len(parts) else "folder"
            if kind != wanted:
                found = f"is a {kind}" if kind else "does not exist"
                here = "/".join(parts[:depth])
                raise UserError(f"dataset {name}: {here!r} {found} in OSF project {project}, expected a {wanted}")
            if wanted == "folder":
                listing = entry["relationships"]["files"]["links"]["related"]["href"]
        hashes = (entry["attributes"].get("extra") or {}).get("hashes") or {}
        return entry["links"]["download"], hashes.get("sha256")
    except (KeyError, TypeError) as err:
        raise UserError(f"dataset {name}: unexpected answer from the OSF API (missing {err})") from None


def _find_in_listing(url: str | None, name: str, get_json: Callable[[str], Any]) -> dict | None:
    """The entry called `name` in a folder listing, following the listing's pages."""
    while url:
        page = get_json(url)
        for entry in page["data"]:
            if entry["attributes"]["name"] == name:
                return entry
        url = (page.get("links") or {}).get("next")
    return None
