"""Nameko services measuring the framework's own ceilings on this machine (``make bench``).

``bench_ceiling`` answers an ``@http`` POST with one INSERT + COMMIT, an RPC echo, and
counts the events it handles; ``bench_source`` dispatches events with Nameko's
``EventDispatcher`` (one publisher confirm per event). Nothing here is used by the services.
"""
import sqlalchemy as sa
from nameko.events import EventDispatcher, event_handler
from nameko.extensions import DependencyProvider
from nameko.rpc import rpc
from nameko.web.handlers import http

metadata = sa.MetaData()
bench_rows = sa.Table(
    "bench_insert", metadata,
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
)


class Engine(DependencyProvider):
    """A plain SQLAlchemy engine on ``BENCH_DATABASE_URL`` (no ping on checkout)."""

    def setup(self):
        url = sa.engine.make_url(self.container.config["BENCH_DATABASE_URL"]).set(drivername="postgresql+psycopg2")
        self.engine = sa.create_engine(url, pool_size=self.container.config.get("max_workers", 10), max_overflow=0)

    def stop(self):
        self.engine.dispose()

    def get_dependency(self, worker_ctx):
        return self.engine


class Ceiling:
    name = "bench_ceiling"
    engine = Engine()
    handled = [0]

    @http("POST", "/insert")
    def insert(self, request):
        with self.engine.begin() as connection:
            connection.execute(bench_rows.insert().values(body=request.get_data(as_text=True)[:200]))
        return 201, "ok"

    @http("GET", "/handled")
    def handled_count(self, request):
        return str(self.handled[0])

    @rpc
    def echo(self, value):
        return value

    @event_handler("bench_source", "bench_pinged")
    def on_ping(self, payload):
        self.handled[0] += 1


class Source:
    name = "bench_source"
    dispatch = EventDispatcher()

    @rpc
    def dispatch_events(self, count, start):
        for number in range(start, start + count):
            self.dispatch("bench_pinged", {"n": number, "text": "Hồ sơ đã được tiếp nhận"})
        return count
