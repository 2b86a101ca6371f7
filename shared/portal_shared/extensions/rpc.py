"""The RPC entrypoint of every service: authenticated, with one error mapping.

``rpc`` replaces ``nameko.rpc.rpc``:

- a call whose context data lacks a valid caller token (``authorization``,
  see ``portal_shared.auth``) is answered ``Unauthorized`` before any worker
  runs, so no method can forget the check (permissions per method stay in
  the service, through ``CallerIdentity``);
- an exception the method does not declare (``expected_exceptions``) and that
  is not a ``PortalError`` reaches the caller as ``InternalError`` carrying a
  correlation id (the Nameko call id, also on the log line with the
  traceback): no SQL text, parameter or path leaks to the caller.
"""
import sys

from nameko.rpc import Rpc

from portal_shared.auth import AUTH_CONTEXT_KEY, auth_settings, verify
from portal_shared.extensions.entrypoints import SignatureCheckedOnce
from portal_shared.errors import InternalError, PortalError, Unauthorized
from portal_shared.logs import get_logger

log = get_logger(__name__)


class AuthenticatedRpc(SignatureCheckedOnce, Rpc):
    def setup(self):
        super().setup()
        self.auth_settings = auth_settings(self.container.config)

    def handle_message(self, body, message):
        context_data = self.unpack_message_headers(message)
        try:
            verify(context_data.get(AUTH_CONTEXT_KEY), self.auth_settings)
        except Unauthorized as exc:
            log.warning("rpc_unauthorized", service=self.container.service_name, method=self.method_name,
                        reason=str(exc))
            self.rpc_consumer.handle_result(message, None, sys.exc_info())
            return
        super().handle_message(body, message)

    def handle_result(self, message, worker_ctx, result, exc_info):
        if exc_info is not None and not isinstance(exc_info[1], (PortalError,) + tuple(self._expected())):
            correlation_id = worker_ctx.call_id if worker_ctx is not None else None
            log.error("rpc_internal_error", correlation_id=correlation_id, method=self.method_name,
                      error_type=exc_info[0].__name__)
            error = InternalError(f"internal error; correlation id {correlation_id}")
            exc_info = (InternalError, error, None)
        return super().handle_result(message, worker_ctx, result, exc_info)

    def _expected(self):
        expected = self.expected_exceptions
        return expected if isinstance(expected, tuple) else (expected,)


rpc = AuthenticatedRpc.decorator
