"""What every entrypoint of ours shares with Nameko's, done once instead of per call.

Nameko checks each call's arguments against the method with ``inspect.getcallargs``, which builds the
method's signature anew every time: a tenth of notify's CPU on eSMS receipts (bench/README.md). The
signature is built once here and each call is bound to it, with the same outcome: ``IncorrectSignature``
for arguments the method cannot take.
"""
import inspect

from nameko.exceptions import IncorrectSignature


class SignatureCheckedOnce:
    """Mixin for an ``Entrypoint``: ``check_signature`` against a signature built at the first call."""

    _signature = None

    def check_signature(self, args, kwargs):
        signature = self._signature
        if signature is None:
            method = getattr(self.container.service_cls, self.method_name)
            signature = self._signature = inspect.signature(method)
        try:
            signature.bind(None, *args, **kwargs)  # None: the unbound method's ``self``, as Nameko passes it
        except TypeError as exc:
            raise IncorrectSignature(str(exc)) from None
