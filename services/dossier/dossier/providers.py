"""The dossier service's own Nameko providers: the procedure catalogue and the holiday calendar, loaded once."""
from nameko.extensions import DependencyProvider

from dossier.domain import calendar
from dossier.procedures import load_catalogue
from portal_shared.config import get_str
from portal_shared.timeutil import utcnow


class ProcedureCatalogue(DependencyProvider):
    """Loads the catalogue in ``setup()``; a malformed file stops start-up."""

    def setup(self):
        self.catalogue = load_catalogue(get_str(self.container.config, "DOSSIER_PROCEDURES_FILE"))

    def get_dependency(self, worker_ctx):
        return self.catalogue


class WorkingCalendar(DependencyProvider):
    """Loads this year's and next year's public holidays in ``setup()``: the first deadline computed
    otherwise imports the ``holidays`` package's every country module, a stall of a few hundred
    milliseconds in the middle of the first accepts."""

    def setup(self):
        year = utcnow().year
        calendar.load_holidays(year, year + 1)
