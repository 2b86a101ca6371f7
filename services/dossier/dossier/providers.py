"""The dossier service's own Nameko provider: the procedure catalogue, loaded once."""
from nameko.extensions import DependencyProvider

from dossier.procedures import load_catalogue
from portal_shared.config import get_str


class ProcedureCatalogue(DependencyProvider):
    """Loads the catalogue in ``setup()``; a malformed file stops start-up."""

    def setup(self):
        self.catalogue = load_catalogue(get_str(self.container.config, "DOSSIER_PROCEDURES_FILE"))

    def get_dependency(self, worker_ctx):
        return self.catalogue
