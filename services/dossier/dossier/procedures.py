"""The procedure catalogue: a YAML file validated at start-up."""
from importlib import resources

import yaml
from nameko.extensions import DependencyProvider

from dossier.domain.model import Procedure
from portal_shared.config import get_str

REQUIRED = ("code", "name", "agency_code", "fee", "processing_days")


class CatalogueError(ValueError):
    """A malformed catalogue; the message names the entry."""


def parse_catalogue(text, source="<catalogue>"):
    """Parse and validate the YAML text; return ``{code: Procedure}``."""
    try:
        entries = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CatalogueError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(entries, list) or not entries:
        raise CatalogueError(f"{source}: must be a non-empty list of procedures")
    catalogue = {}
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
        if entry["code"] in catalogue:
            raise CatalogueError(f"{label}: duplicate code {entry['code']}")
        catalogue[entry["code"]] = Procedure(**{key: entry[key] for key in REQUIRED})
    return catalogue


def load_catalogue(path=None):
    if path:
        with open(path, encoding="utf-8") as handle:
            return parse_catalogue(handle.read(), source=path)
    text = resources.files("dossier").joinpath("procedures.yml").read_text(encoding="utf-8")
    return parse_catalogue(text, source="dossier/procedures.yml")


class ProcedureCatalogue(DependencyProvider):
    """Loads the catalogue in ``setup()``; a malformed file stops start-up."""

    def setup(self):
        self.catalogue = load_catalogue(get_str(self.container.config, "DOSSIER_PROCEDURES_FILE"))

    def get_dependency(self, worker_ctx):
        return self.catalogue
