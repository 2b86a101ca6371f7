"""The procedure catalogue: a YAML file validated at start-up (``providers.ProcedureCatalogue``)."""
from importlib import resources

import yaml

from dossier.domain.model import Procedure

REQUIRED = ("code", "name", "agency_code", "fee", "processing_days")
# Optional national codes (the national portal's MaTTHC, MaLinhVuc, TenLinhVuc), read by portal_sync.
NATIONAL = ("national_code", "field_code", "field_name")


class CatalogueError(ValueError):
    """A malformed catalogue; the message names the entry."""


def parse_catalogue(text, source="<catalogue>"):
    """Parse and validate the YAML text; return ``{code: Procedure}``."""
    return {entry["code"]: Procedure(**{key: entry[key] for key in REQUIRED})
            for entry in _validated_entries(text, source)}


def parse_national_codes(text, source="<catalogue>"):
    """``{code: {"name", "national_code", "field_code", "field_name"}}``; an absent code is None."""
    return {entry["code"]: {"name": entry["name"], **{key: entry.get(key) for key in NATIONAL}}
            for entry in _validated_entries(text, source)}


def _validated_entries(text, source):
    try:
        entries = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CatalogueError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(entries, list) or not entries:
        raise CatalogueError(f"{source}: must be a non-empty list of procedures")
    seen = {}
    for index, entry in enumerate(entries, start=1):
        label = f"{source}: entry {index}" + (f" ({entry.get('code')})" if isinstance(entry, dict) and entry.get("code") else "")
        if not isinstance(entry, dict):
            raise CatalogueError(f"{label}: must be a mapping")
        missing = [key for key in REQUIRED if key not in entry]
        if missing:
            raise CatalogueError(f"{label}: missing {', '.join(missing)}")
        for key in ("code", "name", "agency_code"):
            if not isinstance(entry[key], str) or not entry[key].strip():
                raise CatalogueError(f"{label}: {key} must be a non-empty string")
        for key in ("fee", "processing_days"):
            if isinstance(entry[key], bool) or not isinstance(entry[key], int) or entry[key] < 0:
                raise CatalogueError(f"{label}: {key} must be a whole number >= 0")
        if entry["processing_days"] < 1:
            raise CatalogueError(f"{label}: processing_days must be at least 1")
        for key in NATIONAL:
            if key in entry and (not isinstance(entry[key], str) or not entry[key].strip()
                                 or len(entry[key]) > 255):
                raise CatalogueError(f"{label}: {key} must be a non-empty string of at most 255 characters")
        if entry["code"] in seen:
            raise CatalogueError(f"{label}: duplicate code {entry['code']}")
        seen[entry["code"]] = entry
    return list(seen.values())


def load_catalogue(path=None, parse=parse_catalogue):
    """The catalogue at ``path`` (default: the sample shipped in the package), through ``parse``."""
    if path:
        with open(path, encoding="utf-8") as handle:
            return parse(handle.read(), source=path)
    text = resources.files("dossier").joinpath("procedures.yml").read_text(encoding="utf-8")
    return parse(text, source="dossier/procedures.yml")
