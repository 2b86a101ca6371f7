"""Ask the gateway before a settlement file's word changes anything.

``gateway_confirmer(settings)`` returns ``confirm(candidate)``: ``None`` when the
gateway (VNPay querydr, MoMo query) reports the payment successful with the
same amount, else the reason it is not confirmed. A file line alone never
moves money: a forged or mistaken file fixes nothing.
"""
from payment.domain.model import Outcome
from payment.gateways import GatewayUnavailable, QueryRequest


def _order_info(dossier_code):
    from payment.use_cases import order_info

    return order_info(dossier_code)


def gateway_confirmer(settings):
    def confirm(candidate):
        gateway = settings.gateway(candidate.gateway)
        if not gateway.configured:
            return f"{candidate.gateway} is not configured here: the payment cannot be confirmed"
        try:
            report = gateway.query(QueryRequest(candidate.txn_ref, candidate.amount, candidate.created_at,
                                                _order_info(candidate.dossier_code)))
        except GatewayUnavailable as exc:
            return f"the gateway query failed: {exc}"
        if report.outcome is not Outcome.succeeded:
            return f"the gateway reports the payment {report.outcome.value}"
        if report.amount is not None and report.amount != candidate.amount:
            return f"the gateway reports the amount {report.amount}, not {candidate.amount}"
        return None

    return confirm
