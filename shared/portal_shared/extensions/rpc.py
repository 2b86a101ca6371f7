"""The RPC entrypoint of every service: authenticated, with one error mapping.

``rpc`` replaces ``nameko.rpc.rpc``:

- a call whose context data lacks a valid caller token (``authorization``,
  see ``portal_shared.auth``) is answered ``Unauthorized`` before any worker
  runs, so no method can forget the check (permissions per method stay in
  the service, through ``CallerIdentity``);
- an exception the method does not declare (``expected_exceptions``) and that
  is not a ``PortalError`` reaches the caller as ``InternalError`` carrying a
  correlation id (the Nameko call id, also on the log line with the
  traceback): no SQL text, parameter or path leaks to the caller;
- a reply is published transient and without waiting for a publisher
  confirm (Nameko persists and confirms each one): the caller waits for it on
  a queue of its own, and a reply the broker loses (it stops between the
  publish and the delivery) ends as the caller's timeout either way, confirmed
  or not. That saves a disk write and a round trip to the broker per call.
"""
import sys

from kombu.entity import TRANSIENT_DELIVERY_MODE
from nameko.amqp.publish import Publisher
from nameko.constants import (
    AMQP_SSL_CONFIG_KEY, AMQP_URI_CONFIG_KEY, DEFAULT_SERIALIZER, LOGIN_METHOD_CONFIG_KEY, SERIALIZER_CONFIG_KEY,
)
from nameko.rpc import Responder, Rpc, RpcConsumer, get_rpc_exchange

from portal_shared.auth import AUTH_CONTEXT_KEY, auth_settings, verify
from portal_shared.extensions.entrypoints import SignatureCheckedOnce
from portal_shared.errors import InternalError, PortalError, Unauthorized
from portal_shared.logs import get_logger

log = get_logger(__name__)


class _ReplyPublisher(Publisher):
    use_confirms = False
    delivery_mode = TRANSIENT_DELIVERY_MODE


class _Responder(Responder):
    publisher_cls = _ReplyPublisher


class _RpcConsumer(RpcConsumer):
    """Nameko's ``RpcConsumer``, answering through ``_Responder``."""

    def handle_result(self, message, result, exc_info):
        config = self.container.config
        responder = _Responder(config[AMQP_URI_CONFIG_KEY], get_rpc_exchange(config),
                               config.get(SERIALIZER_CONFIG_KEY, DEFAULT_SERIALIZER), message,
                               ssl=config.get(AMQP_SSL_CONFIG_KEY), login_method=config.get(LOGIN_METHOD_CONFIG_KEY))
        result, exc_info = responder.send_response(result, exc_info)
        self.queue_consumer.ack_message(message)
        return result, exc_info


class AuthenticatedRpc(SignatureCheckedOnce, Rpc):
    rpc_consumer = _RpcConsumer()

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
