"""Who is calling, in a service: the caller of each worker, and this service's own calls.

``CallerIdentity`` is the dependency provider: ``self.caller.require()`` in
an entrypoint verifies the token (``portal_shared.auth``) and returns the
``Caller``, or raises ``Unauthorized``.

``ServiceRpcProxy`` is an ``RpcProxy`` whose calls carry a token the calling
service makes for itself (role ``service``), never the token of whoever
caused the worker (an HTTP caller, an event publisher).
"""
from nameko.extensions import DependencyProvider
from nameko.rpc import MethodProxy, RpcProxy, ServiceProxy

from portal_shared.auth import AUTH_CONTEXT_KEY, MIN_SECRET_LENGTH, CallerAccess, ServiceTokens, auth_settings
from portal_shared.logs import configure_logging, get_logger

log = get_logger(__name__)


class CallerIdentity(DependencyProvider):
    """Gives each worker a ``CallerAccess`` over its context data's ``authorization``."""

    def setup(self):
        configure_logging()
        self.settings = auth_settings(self.container.config)
        if not self.settings.configured:
            log.error("auth_not_configured", reason="AUTH_JWT_SECRET is not set: every RPC call is refused")
        elif len(self.settings.secret.encode("utf-8")) < MIN_SECRET_LENGTH:
            log.warning("auth_secret_short", reason=f"AUTH_JWT_SECRET has fewer than {MIN_SECRET_LENGTH} bytes")

    def get_dependency(self, worker_ctx):
        return CallerAccess(worker_ctx.data.get(AUTH_CONTEXT_KEY), self.settings)


class _ServiceMethodProxy(MethodProxy):
    def __init__(self, *args, tokens, **kwargs):
        self._tokens = tokens
        super().__init__(*args, **kwargs)

    def get_message_headers(self, worker_ctx):
        headers = super().get_message_headers(worker_ctx)
        headers[self._get_header_name(AUTH_CONTEXT_KEY)] = self._tokens.header()
        return headers


class _ServiceProxy(ServiceProxy):
    def __init__(self, *args, tokens, **kwargs):
        self._tokens = tokens
        super().__init__(*args, **kwargs)

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return _ServiceMethodProxy(self.worker_ctx, self.service_name, name, self.reply_listener,
                                   tokens=self._tokens, **self.options)


class ServiceRpcProxy(RpcProxy):
    """``RpcProxy`` whose calls carry this service's own ``service`` token."""

    def setup(self):
        self.tokens = ServiceTokens(self.container.service_name, auth_settings(self.container.config))

    def get_dependency(self, worker_ctx):
        return _ServiceProxy(worker_ctx, self.target_service, self.rpc_reply_listener, tokens=self.tokens,
                             **self.options)
